// Memory planner: choose keep / recompute / swap per tensor class so the activation peak fits a
// budget with the least added time, and say why.
//
// Units are (module class, layer) groups (whole classes with granularity 'class', single tensors with
// 'tensor'). Greedy by
// marginal cost: at each step evaluate every undecided unit under each allowed option with
// `evaluatePlan` and take the one with the least added seconds per byte of peak removed (when no
// single unit lowers the peak, e.g. two tensors rebuilt together, the cheapest per byte of its own) (swap is
// priced by its *exposed* time, so it is nearly free until the host link saturates under the
// overlapping compute, then expensive). When the budget is met, a pruning pass reverts or flips
// choices (swap ↔ recompute) that are no longer needed or cheaper the other way.
import type { ModuleClass, SavedActivationDesc } from './descriptors.ts';
import type { Decision, MemoryPlan, PlanEntry } from './policy.ts';
import { evaluatePlan, type MemoryCostModel, type PlanCost } from './cost.ts';

export interface PlannerOptions extends MemoryCostModel {
  /** Device bytes available for activations at the peak. */
  budgetBytes: number;
  allowRecompute?: boolean;
  allowSwap?: boolean;
  /** Units: a module class, a (class, layer) group (default), or one tensor of one layer. */
  granularity?: 'class' | 'class-layer' | 'tensor';
  /** Swap prefetch distances to try (plan.prefetchAhead); the cheapest fitting plan wins. Default [1]. */
  prefetchAhead?: number[];
}

export interface ClassExplanation {
  module: ModuleClass;
  /** Bytes per micro-batch of this class. */
  bytes: number;
  decision: Decision | 'mixed';
  /** Layers per decision. */
  layers: Record<Decision, number[]>;
  /** Peak reduction / time added per micro-batch attributed to this class when it was chosen. */
  peakSaved: number;
  timeAdded: number;
  why: string;
}

export interface PlannerResult {
  plan: MemoryPlan;
  cost: PlanCost;
  baseline: PlanCost;
  fits: boolean;
  explanation: ClassExplanation[];
  /** The greedy steps, in order. */
  steps: string[];
}

type Option = 'recompute' | 'swap';
interface Unit { key: string; module: ModuleClass; layer: number | null; idx: number[]; recomputable: boolean }

const fmtB = (b: number) => (b >= 1e6 ? `${(b / 1e6).toFixed(2)} MB` : `${(b / 1e3).toFixed(1)} kB`);
const fmtT = (s: number) => `${(s * 1e6).toFixed(2)} µs`;

export function planMemory(descs: SavedActivationDesc[], o: PlannerOptions): PlannerResult {
  // each prefetch distance is its own search; keep the fitting plan with the least added time
  let best: PlannerResult | null = null;
  for (const d of o.prefetchAhead ?? [1]) {
    const r = planWith(descs, o, d);
    if (!best || (r.fits && !best.fits) || (r.fits === best.fits && (r.fits ? r.cost.addedTime < best.cost.addedTime : r.cost.peakBytes < best.cost.peakBytes))) best = r;
  }
  return best!;
}

function planWith(descs: SavedActivationDesc[], o: PlannerOptions, prefetchAhead: number): PlannerResult {
  const allowR = o.allowRecompute ?? true, allowS = o.allowSwap ?? true;
  const byClass = (o.granularity ?? 'class-layer') === 'class';
  const units = new Map<string, Unit>();
  const perTensor = o.granularity === 'tensor';
  descs.forEach((d, i) => {
    const key = byClass ? d.module : perTensor ? `${d.name}@${d.layer}` : `${d.module}@${d.layer}`;
    if (!units.has(key)) units.set(key, { key, module: d.module, layer: byClass ? null : d.layer, idx: [], recomputable: true });
    const u = units.get(key)!;
    u.idx.push(i);
    if (d.recomputable === false) u.recomputable = false;
  });
  const choice = new Map<string, Option>();
  const build = (): MemoryPlan => {
    const entries: PlanEntry[] = descs.map((d) => ({ ...d, decision: 'keep' }));
    for (const [k, opt] of choice) for (const i of units.get(k)!.idx) entries[i].decision = opt;
    return { entries, fullLayers: [], prefetchAhead };
  };
  const memo = {}; // the no-plan replay, shared by every evaluation of this search
  const evalWith = (k: string, opt: Option | null) => {
    const prev = choice.get(k);
    if (opt) choice.set(k, opt); else choice.delete(k);
    const c = evaluatePlan(build(), o, memo);
    if (prev) choice.set(k, prev); else choice.delete(k);
    return c;
  };
  const options = (u: Unit): Option[] => [...(allowR && u.recomputable ? ['recompute' as const] : []), ...(allowS ? ['swap' as const] : [])];

  const baseline = evaluatePlan(build(), o, memo);
  let cur = baseline;
  const steps: string[] = [];
  const gain = new Map<string, { saved: number; time: number }>();
  while (cur.peakBytes > o.budgetBytes) {
    type Cand = { k: string; opt: Option; c: PlanCost; score: number; saved: number; dt: number };
    let best: Cand | null = null, closer: Cand | null = null, flat: Cand | null = null;
    for (const u of units.values()) {
      if (choice.has(u.key)) continue;
      for (const opt of options(u)) {
        const c = evalWith(u.key, opt);
        const saved = cur.peakBytes - c.peakBytes;
        if (saved <= 0) {
          // lowers another peak candidate only (e.g. the peak moved to a phase that needs two units):
          // kept as a fallback, scored per byte of the unit
          const bytes = u.idx.reduce((a, i) => a + descs[i].bytes, 0), dt = Math.max(0, c.addedTime - cur.addedTime);
          if (saved === 0 && bytes > 0 && (!flat || dt / bytes < flat.score)) flat = { k: u.key, opt, c, score: dt / bytes, saved: 0, dt };
          continue;
        }
        const dt = Math.max(0, c.addedTime - cur.addedTime);
        const cand = { k: u.key, opt, c, score: dt / saved, saved, dt };
        if (!best || cand.score < best.score - 1e-18 || (Math.abs(cand.score - best.score) <= 1e-18 && saved > best.saved)) best = cand;
        // A unit that alone closes the gap: the cheapest such one may beat the best ratio.
        if (c.peakBytes <= o.budgetBytes && (!closer || dt < closer.dt)) closer = cand;
      }
    }
    if (closer && best && closer.dt <= best.dt) best = closer;
    if (!best) best = flat;
    if (!best) break;
    choice.set(best.k, best.opt);
    gain.set(best.k, { saved: best.saved, time: best.c.addedTime - cur.addedTime });
    steps.push(`${best.opt} ${best.k}: peak −${fmtB(best.saved)}, +${fmtT(best.c.addedTime - cur.addedTime)} (${(best.score * 1e12).toFixed(3)} ps/B) → peak ${fmtB(best.c.peakBytes)}`);
    cur = best.c;
  }
  // Prune: revert choices no longer needed (latest first), then flip where the other option is cheaper.
  // Most expensive first: reverting those saves the most time.
  for (const k of [...choice.keys()].sort((a, b) => (gain.get(b)?.time ?? 0) - (gain.get(a)?.time ?? 0))) {
    const c = evalWith(k, null);
    if (c.peakBytes <= o.budgetBytes && c.addedTime <= cur.addedTime) { choice.delete(k); gain.delete(k); steps.push(`revert ${k}: no longer needed`); cur = c; }
  }
  for (const k of [...choice.keys()]) {
    const other: Option = choice.get(k) === 'swap' ? 'recompute' : 'swap';
    if (!options(units.get(k)!).includes(other)) continue;
    const c = evalWith(k, other);
    if (c.peakBytes <= Math.max(o.budgetBytes, cur.peakBytes) && c.addedTime < cur.addedTime - 1e-15) {
      choice.set(k, other); steps.push(`flip ${k} to ${other}: −${fmtT(cur.addedTime - c.addedTime)}`); cur = c;
    }
  }
  const plan = build();
  return { plan, cost: cur, baseline, fits: cur.peakBytes <= o.budgetBytes, explanation: explain(units, choice, gain, descs, o), steps };
}

function explain(units: Map<string, Unit>, choice: Map<string, Option>, gain: Map<string, { saved: number; time: number }>,
  descs: SavedActivationDesc[], o: PlannerOptions): ClassExplanation[] {
  const out = new Map<ModuleClass, ClassExplanation>();
  for (const u of units.values()) {
    const bytes = u.idx.reduce((a, i) => a + descs[i].bytes, 0);
    const flops = u.idx.reduce((a, i) => a + descs[i].recomputeFlops, 0);
    let e = out.get(u.module);
    if (!e) { e = { module: u.module, bytes: 0, decision: 'keep', layers: { keep: [], recompute: [], swap: [] }, peakSaved: 0, timeAdded: 0, why: '' }; out.set(u.module, e); }
    e.bytes += bytes;
    const d: Decision = choice.get(u.key) ?? 'keep';
    const layers = u.layer === null ? [...new Set(u.idx.map((i) => descs[i].layer))] : [u.layer];
    e.layers[d].push(...layers);
    const g = gain.get(u.key);
    if (g) { e.peakSaved += g.saved; e.timeAdded += g.time; }
    (e as ClassExplanation & { flops?: number }).flops = ((e as { flops?: number }).flops ?? 0) + flops;
  }
  for (const e of out.values()) {
    const flops = (e as { flops?: number }).flops ?? 0;
    delete (e as { flops?: number }).flops;
    const used = (['keep', 'recompute', 'swap'] as Decision[]).filter((d) => e.layers[d].length > 0);
    e.decision = used.length === 1 ? used[0] : 'mixed';
    const intensity = e.bytes > 0 ? flops / e.bytes : 0;
    const rTime = flops / o.flops, sTime = e.bytes / o.hostBandwidth;
    const cheap = `recompute ${intensity.toFixed(0)} FLOP/B = ${fmtT(rTime)}/micro-batch vs host copy ${fmtT(sTime)} each way`;
    const swapOnly = [...units.values()].some((u) => u.module === e.module && !u.recomputable);
    if (e.decision === 'keep') e.why = swapOnly
      ? `residual stream: selective recompute cannot rebuild it; swap would copy ${fmtT(sTime)} each way, not needed to fit`
      : `not needed to fit (${cheap})`;
    else if (e.decision === 'recompute') e.why = `cheapest per byte: ${cheap}`;
    else if (e.decision === 'swap') e.why = `copy hides under compute (${cheap})`;
    else e.why = `per layer: ${used.map((d) => `${d} [${e.layers[d].join(',')}]`).join(', ')}; ${cheap}`;
  }
  return [...out.values()];
}
