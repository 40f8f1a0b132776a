// Recompute and swap policies (Megatron / MindSpeed vocabulary) → a plan: one decision per saved
// activation, `keep | recompute | swap`. Pure functions of the descriptors; an executor applies the
// plan to the `SavedActivations` records by name (`drop(name, recipe)` / `toHost(name)`).
//
// Recompute (Megatron `recompute_granularity`, `recompute_method`, `recompute_num_layers`,
// `recompute_modules`):
//   'full'      — the layer keeps only its input (attnNorm.x/.rstd) and replays its forward in
//                 backward. method 'uniform': layers of a stage in groups of N, only the first layer
//                 of each group keeps its input; 'block': only the first N layers of each stage.
//   'selective' — the tensors of `recomputeModules` are dropped after forward and rebuilt before
//                 their consumer's backward; with `recomputeNumLayers` (method 'block') only on the
//                 first N layers of each stage (MindSpeed `--recompute-activation-function-num-layers`).
//                 Residual-stream tensors (`recomputable: false`) are never selectively recomputed.
// Swap (Megatron fine-grained offload): a group is one (layer, module) call; groups of
// `offloadModules` with at least one tensor ≥ `minOffloadSize` bytes are eligible; the first
// ⌊offloadFraction·N⌋ eligible groups in forward order are offloaded (their tensors ≥ minOffloadSize).
// A tensor chosen by both is recomputed (nothing resident is left to swap).
import type { ModuleClass, SavedActivationDesc } from './descriptors.ts';

export type RecomputeGranularity = 'none' | 'full' | 'selective';
export type RecomputeMethod = 'uniform' | 'block';
export type Decision = 'keep' | 'recompute' | 'swap';

export interface RecomputePolicy {
  recomputeGranularity: RecomputeGranularity;
  recomputeModules?: ModuleClass[];
  recomputeMethod?: RecomputeMethod;
  recomputeNumLayers?: number;
}

export interface SwapPolicy {
  offloadModules: ModuleClass[];
  /** Bytes (Megatron counts elements: 1,048,576 by default; ×4 for fp32). Default 0. */
  minOffloadSize?: number;
  /** Fraction of eligible groups offloaded, first in forward order. Default 1. */
  offloadFraction?: number;
}

export interface PlanEntry extends SavedActivationDesc {
  decision: Decision;
  /** True when the whole layer is replayed (full recompute): costed as the layer's forward. */
  fullLayer?: boolean;
}

export interface MemoryPlan {
  entries: PlanEntry[];
  /** Layers replayed whole (full recompute). */
  fullLayers: number[];
  /**
   * Swap prefetch distance: when layer l's backward starts, the swapped tensors of layers l−1 … l−d
   * are reloaded (default 1, Megatron's one-layer-ahead). A larger d gives the H2D copies more
   * compute to hide under, and holds the reloaded bytes longer.
   */
  prefetchAhead?: number;
}

export const NO_RECOMPUTE: RecomputePolicy = { recomputeGranularity: 'none' };
export const NO_SWAP: SwapPolicy = { offloadModules: [] };

/** Layers of each stage: default one stage holding every layer present in `descs`. */
function stagesOf(descs: SavedActivationDesc[], stageLayers?: number[][]): number[][] {
  if (stageLayers) return stageLayers;
  return [[...new Set(descs.map((d) => d.layer))].sort((a, b) => a - b)];
}

/** Per layer: 'full' (replayed, input kept), 'full-inner' (replayed, input too), 'selective', or 'none'. */
export function recomputeLayers(p: RecomputePolicy, stages: number[][]): Map<number, 'full' | 'full-inner' | 'selective' | 'none'> {
  const out = new Map<number, 'full' | 'full-inner' | 'selective' | 'none'>();
  const N = p.recomputeNumLayers;
  for (const layers of stages) {
    layers.forEach((l, i) => {
      if (p.recomputeGranularity === 'none') out.set(l, 'none');
      else if (p.recomputeGranularity === 'full') {
        const method = p.recomputeMethod ?? 'uniform';
        if (method === 'block') out.set(l, i < (N ?? layers.length) ? 'full' : 'none');
        else out.set(l, i % (N ?? 1) === 0 ? 'full' : 'full-inner');
      } else {
        const limited = N !== undefined && (p.recomputeMethod ?? 'block') === 'block';
        out.set(l, !limited || i < N! ? 'selective' : 'none');
      }
    });
  }
  return out;
}

export function makePlan(
  descs: SavedActivationDesc[], recompute: RecomputePolicy = NO_RECOMPUTE, swap: SwapPolicy = NO_SWAP,
  stageLayers?: number[][],
): MemoryPlan {
  const modes = recomputeLayers(recompute, stagesOf(descs, stageLayers));
  const modules = new Set(recompute.recomputeModules ?? (recompute.recomputeGranularity === 'selective' ? ['core_attn'] : []));
  const isInput = (d: SavedActivationDesc) => /^attnNorm\./.test(d.name);
  const entries: PlanEntry[] = descs.map((d) => {
    const mode = modes.get(d.layer) ?? 'none';
    if (mode === 'full-inner' || (mode === 'full' && !isInput(d))) return { ...d, decision: 'recompute', fullLayer: true };
    if (mode === 'selective' && modules.has(d.module) && d.recomputable !== false) return { ...d, decision: 'recompute' };
    return { ...d, decision: 'keep' };
  });
  // Swap groups in forward order (descs are in forward order; layers ascending).
  const minSize = swap.minOffloadSize ?? 0;
  const offload = new Set(swap.offloadModules);
  const groups: number[][] = [];
  let key = '';
  entries.forEach((e, i) => {
    const k = `${e.layer}/${e.module}`;
    if (k !== key) { groups.push([]); key = k; }
    groups[groups.length - 1].push(i);
  });
  const eligible = groups.filter((g) => offload.has(entries[g[0]].module) &&
    g.some((i) => entries[i].decision === 'keep' && entries[i].bytes >= minSize));
  const take = Math.floor((swap.offloadFraction ?? 1) * eligible.length + 1e-9);
  for (const g of eligible.slice(0, take))
    for (const i of g) if (entries[i].decision === 'keep' && entries[i].bytes >= minSize) entries[i].decision = 'swap';
  const fullLayers = [...modes].filter(([, m]) => m === 'full' || m === 'full-inner').map(([l]) => l);
  return { entries, fullLayers };
}

/** Bytes per micro-batch by decision. */
export function planTotals(plan: MemoryPlan): Record<Decision, number> {
  const t: Record<Decision, number> = { keep: 0, recompute: 0, swap: 0 };
  for (const e of plan.entries) t[e.decision] += e.bytes;
  return t;
}

/** Executor view: per layer, the saved names to drop (recompute) and to move to host (swap). */
export function planActions(plan: MemoryPlan): Map<number, { recompute: string[]; swap: string[] }> {
  const m = new Map<number, { recompute: string[]; swap: string[] }>();
  for (const e of plan.entries) {
    if (!m.has(e.layer)) m.set(e.layer, { recompute: [], swap: [] });
    if (e.decision !== 'keep') m.get(e.layer)![e.decision].push(e.name);
  }
  return m;
}
