// Pipeline / recompute / swap training (`ultramoe train --parallel pp=4 --vpp 2 --schedule interleaved
// --recompute core_attn,moe_act --swap ... --memory-budget 24MiB`): the trainer's step through
// src/parallel/exec's runTrainStep. Each optimizer step runs the M micro-batches of `batch` sequences
// on a fresh simulated cluster (pipeline rank r = device r of one node of the --device spec), so the
// accounting is per step; the trainer then clips, steps AdamW and updates the expert biases exactly as
// on one device. The model is the ordinary MoEGPT: checkpoints, evaluation and sampling are unchanged.
// With tp/dp/ep inside the stages (flags.inner) the step goes through train/pp-parallel.ts instead
// (src/parallel/pp: each stage a lockstep group of devices, --overlap on|off); same contract.
import { Cluster } from '../device/cluster.ts';
import { resolveSpec } from '../device/spec-file.ts';
import type { DeviceSpec } from '../device/specs.ts';
import type { MoEGPT } from '../model/gpt.ts';
import { InitMemo } from '../model/init.ts';
import type { GradStore, RouterStats } from '../model/module.ts';
import { exposedSwap } from '../parallel/exec/report.ts';
import { execLayout } from '../parallel/exec/layout.ts';
import { partitionLayers, type Partition } from '../parallel/pipeline/partition.ts';
import { runTrainStep, type TrainStepResult } from '../parallel/exec/train-step.ts';
import { paramOwners } from '../parallel/exec/pipeline-executor.ts';
import type { PipelineFlags } from './pipeline-flags.ts';
import type { ReportTable } from './report.ts';
import { PPParallelRunner, type StageBudgetReport } from './pp-parallel.ts';

export interface PipelineStepResult {
  loss: number; lmLoss: number; auxLoss: number; zLoss: number;
  grads: GradStore;
  routerStats: RouterStats[];
  simSeconds: number;
  bubbleFraction: number;
}

export interface PipelineRunSummary {
  pp: number; vpp: number; schedule: string; device: string;
  recompute: string; swap: string; minOffloadSize: number | null; offloadFraction: number | null; memoryBudget: number | null;
  /** layers of each pipeline rank's chunks, e.g. [[0,1],[4,5]] */
  stageLayers: number[][][];
  /** per device: peak HBM bytes per category (weights, gradients, optimizer, activations, comm, total), max over steps */
  perDevicePeakByCategory: Record<string, number>[];
  perDevicePeakMemoryBytes: number[];
  /** peak resident saved activations per rank (SavedActivations ledger), max over steps */
  peakActivationBytes: number[];
  /** host memory holding swapped activations, per node, max over steps */
  hostSwappedPeakBytes: number[];
  /** mean over steps of the executed bubble (step − mean busy) / mean busy */
  bubbleFraction: number;
  /** mean simulated seconds per optimizer step (executed timeline makespan) */
  simulatedStepSeconds: number;
  /** the cost model's prediction for the executed plan (pure pipeline simulator) */
  predictedStepSeconds: number;
  /** last step, per device: compute busy seconds, exposed host-copy (swap) seconds */
  timeline: { device: number; computeBusy: number; exposedSwap: number }[];
  /** decisions of the memory plan (null = nothing recomputed or swapped) */
  plan: null | { keep: number; recompute: number; swap: number; fullLayers: number[]; keptBytes: number; recomputedBytes: number; swappedBytes: number };
  /** with --memory-budget: per rank, whether the plan fits and why each module class got its decision */
  planner: { fits: boolean; predictedPeakBytes: number; baselinePeakBytes: number; predictedAddedFraction: number; classes: { module: string; decision: string; layers: Record<string, number[]>; why: string }[] }[];
  gantt: string | null;
  trace: string | null;
  /** pp × tp/dp/ep runs (src/parallel/pp); null for one device per stage */
  stages: null | PPStagesSummary;
}

/** What a pp × tp/dp/ep run adds (train/pp-parallel.ts). */
export interface PPStagesSummary {
  /** 'pp=4,tp=1,cp=1,dp=2,ep=2' */
  layout: string;
  world: number;
  /** devices of each pipeline stage */
  stageDevices: number[][];
  overlap: boolean;
  /** mean over steps of the fraction of EP all-to-all time hidden behind compute (executed timeline, whole step) */
  epCommHiddenFraction: number;
  /** mean over steps: Σ EP a2a seconds over devices, and the part hidden */
  epCommSeconds: number;
  epCommHiddenSeconds: number;
  /** F/B pairs issued together per step (overlap on) */
  pairsPerStep: number;
  /** the first step's batch run again with the other overlap mode (same weights), for comparison */
  otherMode: { overlap: boolean; stepSeconds: number; bubbleFraction: number; epCommHiddenFraction: number } | null;
  /** --memory-budget: the recompute/swap chosen per stage (pp/stage-budget.ts), predicted and executed activation
   *  peaks per device (executed: max over steps), added simulated seconds (last step) */
  memoryBudget: StageBudgetReport | null;
}

export class PipelineEngine {
  readonly spec: DeviceSpec;
  private steps = 0;
  private sumBubble = 0;
  private sumSeconds = 0;
  private peaks: Record<string, number>[] = [];
  private act: number[] = [];
  private host: number[] = [];
  /** the last executed step (its cluster, trace, Gantt); the first step's plan and planner */
  last: TrainStepResult | null = null;
  first: { plan: TrainStepResult['plan']; planner: TrainStepResult['planner']; predicted: number; stageLayers: number[][][] } | null = null;
  lastTimeline: PipelineRunSummary['timeline'] = [];

  /** pp × tp/dp/ep runs (flags.inner) */
  runner: PPParallelRunner | null = null;
  private pp = { hidden: 0, comm: 0, hiddenSecs: 0, pairs: 0, other: null as PPStagesSummary['otherMode'], budget: null as StageBudgetReport | null };

  constructor(readonly flags: PipelineFlags) {
    this.spec = resolveSpec(flags.device, flags.hbmBytes ? { hbmBytes: flags.hbmBytes } : {});
  }

  /** One global batch through the executor: returns the losses (means over micro-batches) and gradients (caller disposes). */
  async step(model: MoEGPT, microBatches: { tokens: Int32Array; targets: Int32Array; batch: number; seqLen: number }[]): Promise<PipelineStepResult> {
    const f = this.flags;
    if (f.inner) return this.stepStages(model, microBatches);
    const cluster = new Cluster({ spec: this.spec, nodes: 1, devicesPerNode: f.pp });
    const part = this.partitionOf(model, microBatches[0].batch, microBatches[0].seqLen);
    this.chargeOptimizer(model, cluster, part);
    const r = await runTrainStep(model, {
      pp: f.pp, vpp: f.vpp, schedule: f.schedule, microBatches, cluster,
      ...(f.memoryBudget !== undefined ? { memoryBudget: f.memoryBudget } : { recompute: f.recompute, recomputeNumLayers: f.recomputeNumLayers, swap: f.swap, minOffloadSize: f.minOffloadSize, offloadFraction: f.offloadFraction }),
      gantt: false,
    });
    const M = microBatches.length, mean = (k: 'lmLoss' | 'auxLoss' | 'zLoss') => r.run.reports.reduce((a, x) => a + x[k], 0) / M;
    const ranks = Array.from({ length: f.pp }, (_, i) => i);
    this.steps++; this.sumBubble += r.bubbleFraction; this.sumSeconds += r.stepTimeSeconds;
    r.perDevicePeakByCategory.forEach((c, d) => { const o = (this.peaks[d] ??= {}); for (const [k, v] of Object.entries(c)) o[k] = Math.max(o[k] ?? 0, v); });
    r.peakActivationBytes.forEach((b, d) => { this.act[d] = Math.max(this.act[d] ?? 0, b); });
    r.hostSwappedPeakBytes.forEach((b, d) => { this.host[d] = Math.max(this.host[d] ?? 0, b); });
    const busy = ranks.map((d) => cluster.timeline.events.filter((e) => e.device === d && e.stream === 'compute').reduce((a, e) => a + e.end - e.start, 0));
    const exp = exposedSwap(cluster, ranks);
    this.lastTimeline = ranks.map((d) => ({ device: d, computeBusy: busy[d], exposedSwap: exp[d] }));
    if (r.partition.stageOfLayer.join() !== part.stageOfLayer.join())
      throw new Error(`pipeline engine: the executor partitioned layers as [${r.partition.stageOfLayer}], the optimizer state was charged for [${part.stageOfLayer}]`);
    if (!this.first) {
      const stageLayers = r.partition.stages.map((st) => st.chunks.map((c) => { const ch = r.partition.chunks[c.index]; return Array.from({ length: ch.end - ch.start }, (_, i) => ch.start + i); }));
      this.first = { plan: r.plan, planner: r.planner, predicted: r.predictedStepSeconds, stageLayers };
    }
    this.last = r;
    return {
      loss: r.loss, lmLoss: mean('lmLoss'), auxLoss: mean('auxLoss'), zLoss: mean('zLoss'), grads: r.grads,
      routerStats: r.run.contexts.flatMap((c) => c.routerStats ?? []),
      simSeconds: r.stepTimeSeconds, bubbleFraction: r.bubbleFraction,
    };
  }

  /** A pp × tp/dp/ep step (train/pp-parallel.ts); the first step is also run once in the other overlap mode for the summary (unless --overlap-compare off). */
  private stepStages(model: MoEGPT, mbs: { tokens: Int32Array; targets: Int32Array; batch: number; seqLen: number }[]): PipelineStepResult {
    const M = mbs.length;
    if (!this.runner) {
      // both runners (this one and the comparison run's) start from the same seeded replicas: draw them once
      const f = this.flags, memo = new InitMemo(), compare = f.compareOverlap !== false && f.inner!.ep >= 2 && f.schedule !== 'gpipe';
      let other: PPParallelRunner | null = null;
      try {
        this.runner = new PPParallelRunner(model, f, this.spec, M * mbs[0].batch, mbs[0].seqLen, M, 1, memo);
        if (compare) other = new PPParallelRunner(model, { ...f, overlap: !f.overlap }, this.spec, M * mbs[0].batch, mbs[0].seqLen, M, 1, memo);
      } finally { memo.dispose(); }
      if (other) this.pp.other = this.otherMode(other, model, mbs);
    }
    const r = this.runner.step(model, mbs), rep = r.report;
    this.steps++; this.sumBubble += rep.bubbleFraction; this.sumSeconds += rep.stepSeconds;
    r.perDevicePeakByCategory.forEach((c, d) => { const o = (this.peaks[d] ??= {}); for (const [k, v] of Object.entries(c)) o[k] = Math.max(o[k] ?? 0, v); });
    r.perDevicePeakByCategory.forEach((c, d) => { this.act[d] = Math.max(this.act[d] ?? 0, c.activations ?? 0); });
    r.hostSwappedPeakBytes.forEach((b, d) => { this.host[d] = Math.max(this.host[d] ?? 0, b); });
    if (r.budget) this.pp.budget = { ...r.budget, executedPeaks: r.budget.executedPeaks.map((p, d) => Math.max(p, this.pp.budget?.executedPeaks[d] ?? 0)) };
    this.pp.hidden += r.epHidden.fraction; this.pp.comm += r.epHidden.comm; this.pp.hiddenSecs += r.epHidden.hidden; this.pp.pairs += rep.pairs;
    const tl = this.runner.cluster.timeline, s = tl.commSummary();
    this.lastTimeline = this.runner.model.devices.flat().map((d, i) => ({ device: d, computeBusy: s.find((x) => x.device === d)?.compute ?? 0, exposedSwap: r.exposedSwapSeconds[i] ?? 0 }));
    if (!this.first) {
      const part = this.runner.model.partition;
      const stageLayers = part.stages.map((st) => st.chunks.map((c) => { const ch = part.chunks[c.index]; return Array.from({ length: ch.end - ch.start }, (_, i) => ch.start + i); }));
      this.first = { plan: this.runner.model.memory.find((x) => x)?.plan() ?? null, planner: [], predicted: NaN, stageLayers };
    }
    return {
      loss: r.loss, lmLoss: r.lmLoss, auxLoss: r.auxLoss, zLoss: r.zLoss, grads: r.grads,
      routerStats: rep.routerStats.flat(), simSeconds: rep.stepSeconds, bubbleFraction: rep.bubbleFraction,
    };
  }

  /** The same batch on the same weights with the other --overlap mode on runner `other` (numbers discarded, timeline measured; disposes it). */
  private otherMode(other: PPParallelRunner, model: MoEGPT, mbs: { tokens: Int32Array; targets: Int32Array; batch: number; seqLen: number }[]): PPStagesSummary['otherMode'] {
    const f = this.flags;
    try {
      const r = other.step(model, mbs);
      r.grads.dispose();
      return { overlap: !f.overlap, stepSeconds: r.report.stepSeconds, bubbleFraction: r.report.bubbleFraction, epCommHiddenFraction: r.epHidden.fraction };
    } finally { other.dispose(); }
  }

  /** The executor's partition (same inputs as runTrainStep: execLayout FLOPs per layer, partitionLayers). */
  private partitionOf(model: MoEGPT, batch: number, seqLen: number): Partition {
    if (!this.part) {
      const lay = execLayout(model.cfg, batch, seqLen, {});
      this.part = partitionLayers(Array.from({ length: model.cfg.numLayers }, (_, l) => lay.layerFlops.get(l) ?? 0), this.flags.pp, this.flags.vpp);
    }
    return this.part;
  }
  private part: Partition | null = null;

  /** fp32 AdamW moments m and v of each rank's parameters (the owners the executor charges weights to). */
  private chargeOptimizer(model: MoEGPT, cluster: Cluster, part: Partition): void {
    for (const [name, v] of model.params.vars) {
      for (const r of paramOwners(model, part, name)) cluster.device(r).hbm.alloc('optimizer', `adam ${name}`, 2 * v.size * 4);
    }
  }

  /** The Gantt SVG of the last step (rendered on demand: vega is slow-ish). */
  async ganttSvg(): Promise<string> {
    if (this.runner) {
      const { ganttSvg } = await import('../parallel/exec/report.ts');
      return ganttSvg(this.runner.cluster, this.runner.model.devices.flat(), 'pp × ep step (executed timeline, last step)');
    }
    if (!this.last) return '';
    const { ganttSvg } = await import('../parallel/exec/report.ts');
    return ganttSvg(this.last.cluster, Array.from({ length: this.flags.pp }, (_, i) => i));
  }

  summary(files: { gantt: string | null; trace: string | null }): PipelineRunSummary {
    const f = this.flags, plan = this.first?.plan ?? null;
    const count = (d: string) => plan ? plan.entries.filter((e) => e.decision === d).length : 0;
    const bytes = (d: string) => plan ? plan.entries.filter((e) => e.decision === d).reduce((a, e) => a + e.bytes, 0) : 0;
    return {
      pp: f.pp, vpp: f.vpp, schedule: f.schedule, device: f.device,
      recompute: f.memoryBudget !== undefined ? 'planner' : f.recompute, swap: f.memoryBudget !== undefined ? 'planner' : f.swap,
      minOffloadSize: f.minOffloadSize ?? null, offloadFraction: f.offloadFraction ?? null, memoryBudget: f.memoryBudget ?? null,
      stageLayers: this.first?.stageLayers ?? [],
      perDevicePeakByCategory: this.peaks, perDevicePeakMemoryBytes: this.peaks.map((c) => c.total ?? 0),
      peakActivationBytes: this.act, hostSwappedPeakBytes: this.host,
      bubbleFraction: this.steps ? this.sumBubble / this.steps : 0,
      simulatedStepSeconds: this.steps ? this.sumSeconds / this.steps : 0,
      predictedStepSeconds: this.first?.predicted ?? 0,
      timeline: this.lastTimeline,
      plan: plan ? { keep: count('keep'), recompute: count('recompute'), swap: count('swap'), fullLayers: plan.fullLayers, keptBytes: bytes('keep'), recomputedBytes: bytes('recompute'), swappedBytes: bytes('swap') } : null,
      planner: (this.first?.planner ?? []).map((p) => ({
        fits: p.fits, predictedPeakBytes: p.cost.peakBytes, baselinePeakBytes: p.baseline.peakBytes, predictedAddedFraction: p.cost.addedFraction,
        classes: p.explanation.map((c) => ({ module: c.module, decision: c.decision, layers: c.layers, why: c.why })),
      })),
      gantt: files.gantt, trace: files.trace,
      stages: this.runner ? this.stagesSummary() : null,
    };
  }

  private stagesSummary(): PPStagesSummary {
    const m = this.runner!.model, n = Math.max(1, this.steps), L = m.layout;
    return {
      layout: `pp=${L.pp},tp=${L.tp},cp=${L.cp},dp=${L.dp},ep=${L.ep}`, world: L.world, stageDevices: m.devices, overlap: this.flags.overlap,
      epCommHiddenFraction: this.pp.hidden / n, epCommSeconds: this.pp.comm / n, epCommHiddenSeconds: this.pp.hiddenSecs / n, pairsPerStep: this.pp.pairs / n,
      otherMode: this.pp.other, memoryBudget: this.pp.budget,
    };
  }

  /** The Perfetto trace of the last step of a pp × tp/dp/ep run (null otherwise). */
  stagesTrace(): object | null { return this.runner ? this.runner.cluster.trace() : null; }

  dispose(): void { this.runner?.dispose(); this.runner = null; }
}

const MiB = (b: number) => Number((b / 2 ** 20).toFixed(3));

/** report.html tables of a pipeline/recompute/swap run. */
export function pipelineTables(p: PipelineRunSummary): ReportTable[] {
  const cats = [...new Set(p.perDevicePeakByCategory.flatMap((c) => Object.keys(c)))].filter((c) => c !== 'total').sort();
  const st = p.stages, layersOf = (d: number) => p.stageLayers[st ? st.stageDevices.findIndex((x) => x.includes(d)) : d];
  const tables: ReportTable[] = [
    { title: `Peak memory per simulated device (MiB), ${st ? st.layout : `pp=${p.pp}`} vpp=${p.vpp} ${p.schedule} on ${p.device}`,
      note: `Max over steps; per-category peaks need not coincide in time; optimizer = fp32 AdamW m and v of the rank's parameters. recompute ${p.recompute}, swap ${p.swap}${p.memoryBudget !== null ? `, budget ${MiB(p.memoryBudget)} MiB` : ''}.`,
      columns: ['rank', 'layers', 'peak', ...cats, 'saved activations', 'host swapped (node)'],
      rows: p.perDevicePeakMemoryBytes.map((b, r) => [r, layersOf(r)?.map((c) => c.join(',')).join(' | ') ?? '', MiB(b), ...cats.map((c) => MiB(p.perDevicePeakByCategory[r][c] ?? 0)), MiB(p.peakActivationBytes[r] ?? 0), r === 0 ? MiB(p.hostSwappedPeakBytes[0] ?? 0) : '']) },
    { title: 'Simulated timeline per device (last step, seconds)',
      note: `Mean step ${p.simulatedStepSeconds.toPrecision(4)} s${Number.isFinite(p.predictedStepSeconds) ? ` (predicted ${p.predictedStepSeconds.toPrecision(4)} s)` : ''}, bubble ${(100 * p.bubbleFraction).toFixed(1)}%.`,
      columns: ['device', 'compute busy', 'exposed swap'], rows: p.timeline.map((t) => [t.device, t.computeBusy, t.exposedSwap]) },
  ];
  if (st) tables.push({
    title: `EP all-to-all overlap (${st.layout}, executed timeline)`,
    note: 'Fraction of EP all-to-all seconds covered by compute on the same device, whole step; the first batch was also run in the other --overlap mode (docs/pipeline-execution.md §7).',
    columns: ['overlap', 'step (s)', 'bubble', 'EP a2a hidden', 'F/B pairs per step'],
    rows: [[st.overlap ? 'on' : 'off', p.simulatedStepSeconds, p.bubbleFraction, st.epCommHiddenFraction, st.pairsPerStep],
      ...(st.otherMode ? [[`${st.otherMode.overlap ? 'on' : 'off'} (first batch)`, st.otherMode.stepSeconds, st.otherMode.bubbleFraction, st.otherMode.epCommHiddenFraction, '']] : [])],
  });
  if (p.planner.length) tables.push({
    title: 'Memory planner (--memory-budget)', note: `Per pipeline rank: ${p.planner.map((x, r) => `rank ${r} ${x.fits ? 'fits' : 'does NOT fit'} (predicted peak ${MiB(x.predictedPeakBytes)} of ${MiB(x.baselinePeakBytes)} MiB, +${(100 * x.predictedAddedFraction).toFixed(1)}% time)`).join('; ')}.`,
    columns: ['rank', 'module', 'decision', 'why'], rows: p.planner.flatMap((x, r) => x.classes.map((c) => [r, c.module, c.decision, c.why])),
  });
  return tables;
}
