// What a parallel run adds to the JSON summary and to report.html: per-device peak memory by category,
// the communication ledger (bytes per collective / group / link), the timeline summary and, with
// dynamic placement, the migrations and the simulated MoE time before/after.
import type { ParallelEngine } from './parallel.ts';
import type { StepRow } from './metrics.ts';
import type { ReportTable } from './report.ts';

export interface ParallelRunSummary {
  layout: string;
  world: number;
  device: string;
  dispatcher: string;
  distributedOptimizer: boolean;
  /** dense-layer sequence parallelism in force (--sequence-parallel) */
  sequenceParallel: boolean;
  /** peak HBM bytes per simulated device (rank order) */
  perDevicePeakMemoryBytes: number[];
  /** per device: peak bytes per memory category (weights, gradients, optimizer, activations, …) */
  perDevicePeakMemoryByCategory: Record<string, number>[];
  /** bytes on the wire: total and by collective kind, by group kind, by link */
  commBytes: { total: number; byKind: Record<string, number>; byGroup: Record<string, number>; byLink: Record<string, number> };
  /** mean simulated seconds per optimizer step (timeline makespan / steps) */
  simulatedStepSeconds: number;
  simulatedMakespanSeconds: number;
  /** per device: compute and communication busy seconds, exposed communication */
  timeline: { device: number; compute: number; comm: number; exposedComm: number }[];
  placement: null | {
    solver: string; period: number; migrations: number; migratedSlots: number; migratedBytes: number; migrationSeconds: number;
    /** mean simulated expert seconds per step (slowest EP rank, Σ MoE layers) up to the first re-placement and after it */
    moeSecondsBefore: number; moeSecondsAfter: number;
    deviceLoadMaxOverMeanBefore: number; deviceLoadMaxOverMeanAfter: number;
  };
}

const add = (o: Record<string, number>, k: string, v: number) => { o[k] = (o[k] ?? 0) + v; };
const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);

export function parallelSummary(e: ParallelEngine, rows: StepRow[]): ParallelRunSummary {
  const s = e.pm.summary();
  const byKind: Record<string, number> = {}, byGroup: Record<string, number> = {}, byLink: Record<string, number> = {};
  for (const c of s.comm) { add(byKind, c.op, c.bytes); add(byGroup, c.group, c.bytes); add(byLink, c.link, c.bytes); }
  const pl = e.placement;
  let placement: ParallelRunSummary['placement'] = null;
  if (pl) {
    const first = pl.migrations[0]?.step ?? Infinity;
    const before = rows.filter((r) => r.step <= first), after = rows.filter((r) => r.step > first);
    placement = {
      solver: pl.solver, period: pl.period, migrations: pl.migrations.length,
      migratedSlots: pl.migrations.reduce((a, m) => a + m.moves, 0), migratedBytes: pl.migrations.reduce((a, m) => a + m.bytes, 0),
      migrationSeconds: pl.migrations.reduce((a, m) => a + m.seconds, 0),
      moeSecondsBefore: mean(before.map((r) => r.simMoeSeconds ?? NaN)), moeSecondsAfter: mean(after.map((r) => r.simMoeSeconds ?? NaN)),
      deviceLoadMaxOverMeanBefore: mean(before.map((r) => r.deviceLoadMaxOverMean ?? NaN)), deviceLoadMaxOverMeanAfter: mean(after.map((r) => r.deviceLoadMaxOverMean ?? NaN)),
    };
  }
  return {
    layout: e.flags.layout, world: e.pm.layout.world, device: e.flags.device, dispatcher: e.flags.dispatcher, distributedOptimizer: e.flags.distributedOptimizer, sequenceParallel: e.pm.sequenceParallel,
    perDevicePeakMemoryBytes: s.memory.map((m) => m.peak),
    perDevicePeakMemoryByCategory: s.memory.map((m) => Object.fromEntries(Object.entries(m.byCategory).map(([k, v]) => [k, v.peak]))),
    commBytes: { total: s.commBytes, byKind, byGroup, byLink },
    simulatedStepSeconds: rows.length ? s.makespan / rows.length : 0,
    simulatedMakespanSeconds: s.makespan,
    timeline: e.cluster.timeline.commSummary().map((d) => ({ device: d.device, compute: d.compute, comm: d.comm, exposedComm: d.exposedComm })),
    placement,
  };
}

const MiB = (b: number) => Number((b / 2 ** 20).toFixed(3));

/** report.html tables of a parallel run. */
export function parallelTables(p: ParallelRunSummary, e: ParallelEngine): ReportTable[] {
  const cats = [...new Set(p.perDevicePeakMemoryByCategory.flatMap((c) => Object.keys(c)))].sort();
  const tables: ReportTable[] = [
    { title: `Peak memory per simulated device (MiB), ${p.layout}${p.sequenceParallel ? ' (sequence parallel)' : ''} on ${p.device}`, note: 'Per-category peaks need not coincide in time; "peak" is the device total.',
      columns: ['rank', 'peak', ...cats], rows: p.perDevicePeakMemoryBytes.map((b, r) => [r, MiB(b), ...cats.map((c) => MiB(p.perDevicePeakMemoryByCategory[r][c] ?? 0))]) },
    { title: 'Communication ledger', note: `Total ${MiB(p.commBytes.total)} MiB over the whole run.`,
      columns: ['collective', 'group', 'link', 'MiB', 'messages'], rows: e.pm.summary().comm.map((c) => [c.op, c.group, c.link, MiB(c.bytes), c.messages]) },
    { title: 'Simulated timeline per device (seconds)', note: `Makespan ${p.simulatedMakespanSeconds.toPrecision(4)} s, ${p.simulatedStepSeconds.toPrecision(4)} s per step.`,
      columns: ['device', 'compute', 'communication', 'exposed communication'], rows: p.timeline.map((t) => [t.device, t.compute, t.comm, t.exposedComm]) },
  ];
  if (p.placement && e.placement) tables.push({
    title: `Dynamic expert placement (${p.placement.solver}, period ${p.placement.period})`,
    note: `Simulated expert time per step ${p.placement.moeSecondsBefore.toPrecision(4)} s before → ${p.placement.moeSecondsAfter.toPrecision(4)} s after; ` +
      `EP-device load max/mean ${p.placement.deviceLoadMaxOverMeanBefore.toFixed(3)} → ${p.placement.deviceLoadMaxOverMeanAfter.toFixed(3)}.`,
    columns: ['step', 'layer', 'slots moved', 'cross-rank', 'MiB', 'seconds'],
    rows: e.placement.migrations.map((m) => [m.step, m.layer, m.moves, m.crossRank, MiB(m.bytes), m.seconds]),
  });
  return tables;
}
