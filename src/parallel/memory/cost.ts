// What a memory plan costs: peak activation bytes on the device and time added per micro-batch.
//
// Peak (1F1B rank holding `inFlight` micro-batches): the other n−1 micro-batches hold their kept
// bytes K; the one in backward walks its groups g = (layer, module) in reverse forward order, and
// before g's backward holds the kept bytes of groups ≤ g, plus g's tensors rebuilt (recomputed or
// reloaded), plus the next group's swapped tensors being prefetched:
//   peak = (n − 1)·K + max_g ( Σ_{g' ≤ g} kept_g' + recomputed_g + swapped_g + swapped_{g−1} ).
// A fully recomputed layer is one group (its forward is replayed at once). The forward transient
// (a group's tensors before they are dropped/offloaded) is bounded by the same expression.
//
// Time per micro-batch: F = Σ layer forward FLOPs / flops (+ Σ saved bytes / hbmBandwidth),
// B = backwardFactor·F.
//   recompute = Σ recomputeFlops / flops + Σ bytes / hbmBandwidth (the rebuilt tensor is written)
//               (+ recomputeCommBytes / commBandwidth); a fully recomputed layer costs its forward.
//   swap      = S / hostBandwidth each way (PCIe is full duplex); only the excess over the overlap
//               window is exposed: per direction F + B + recompute in the 1F1B steady state
//               (`swapWindow` 'steady'), or F for D2H and B for H2D ('microbatch').
// Step-time increase ≈ added / (F + B): every micro-batch's backward on the stage gets longer.
import type { SavedActivationDesc } from './descriptors.ts';
import type { MemoryPlan } from './policy.ts';

export interface MemoryCostModel {
  /** Effective device throughput, FLOP/s. */
  flops: number;
  /** Host link bandwidth per direction, bytes/s. */
  hostBandwidth: number;
  /** Bandwidth for communication repeated by recompute (EP dispatch), bytes/s. */
  commBandwidth?: number;
  /** Device memory bandwidth, bytes/s: a rebuilt tensor is at least written once (permute, norms). */
  hbmBandwidth?: number;
  /** Micro-batches whose activations are alive at the peak (1F1B rank r: min(p − r, M)). */
  inFlight: number;
  /** Forward FLOPs per layer and micro-batch (default: Σ recomputeFlops of the layer). */
  forwardFlops?: Map<number, number>;
  /** B / F (default 2). */
  backwardFactor?: number;
  /** Share of the overlap window the host copies can use (default 1). */
  swapOverlap?: number;
  /**
   * 'steady' (default): 1F1B steady state — a stage runs one F and one B per micro-batch, so each
   * link direction has F + B (+ recompute) per micro-batch to move S bytes (offload streams behind
   * the next passes, prefetch starts during the previous ones; Megatron's pipeline-aware offload).
   * 'microbatch': D2H must hide under the same micro-batch's F, H2D under its B (no pipelining).
   */
  swapWindow?: 'steady' | 'microbatch';
}

export interface PlanCost {
  /** Kept bytes per micro-batch. */
  keptBytes: number;
  peakBytes: number;
  /** Peak of the same layout with nothing recomputed or swapped: inFlight · Σ bytes. */
  baselinePeakBytes: number;
  /** Per micro-batch, seconds. */
  forwardTime: number;
  backwardTime: number;
  recomputeTime: number;
  swapBytes: number;
  swapExposedTime: number;
  addedTime: number;
  /** addedTime / (F + B). */
  addedFraction: number;
}

export function layerFlopsOf(descs: SavedActivationDesc[], m: MemoryCostModel): Map<number, number> {
  if (m.forwardFlops) return m.forwardFlops;
  const f = new Map<number, number>();
  for (const d of descs) f.set(d.layer, (f.get(d.layer) ?? 0) + d.recomputeFlops);
  return f;
}

export function evaluatePlan(plan: MemoryPlan, m: MemoryCostModel): PlanCost {
  const n = m.inFlight;
  const entries = plan.entries;
  const full = new Set(plan.fullLayers);
  // Groups in forward order.
  type G = { kept: number; rec: number; swap: number };
  const groups: G[] = [];
  let key = '';
  for (const e of entries) {
    const k = full.has(e.layer) ? `L${e.layer}` : `${e.layer}/${e.module}`;
    if (k !== key) { groups.push({ kept: 0, rec: 0, swap: 0 }); key = k; }
    const g = groups[groups.length - 1];
    if (e.decision === 'keep') g.kept += e.bytes; else if (e.decision === 'recompute') g.rec += e.bytes; else g.swap += e.bytes;
  }
  const K = groups.reduce((a, g) => a + g.kept, 0);
  let prefix = 0, worst = 0;
  groups.forEach((g, i) => {
    prefix += g.kept;
    worst = Math.max(worst, prefix + g.rec + g.swap + (i > 0 ? groups[i - 1].swap : 0));
  });
  const total = entries.reduce((a, e) => a + e.bytes, 0);

  const layerFlops = layerFlopsOf(entries, m);
  const fwdFlops = [...layerFlops.values()].reduce((a, b) => a + b, 0);
  // With hbmBandwidth the forward also pays for writing every saved tensor once (same roofline-
  // additive accounting as a recompute), so ratios stay consistent for memory-bound layers.
  const F = fwdFlops / m.flops + total / (m.hbmBandwidth ?? Infinity);
  const B = (m.backwardFactor ?? 2) * F;
  let recFlops = 0, recComm = 0, recBytes = 0;
  for (const l of full) recFlops += layerFlops.get(l) ?? 0;
  for (const e of entries) {
    if (e.decision !== 'recompute') continue;
    if (!full.has(e.layer)) recFlops += e.recomputeFlops;
    recComm += e.recomputeCommBytes ?? 0;
    recBytes += e.bytes;
  }
  const recomputeTime = recFlops / m.flops + recBytes / (m.hbmBandwidth ?? Infinity) +
    (recComm > 0 ? recComm / (m.commBandwidth ?? Infinity) : 0);
  const swapBytes = entries.filter((e) => e.decision === 'swap').reduce((a, e) => a + e.bytes, 0);
  const copy = swapBytes / m.hostBandwidth;
  const ov = m.swapOverlap ?? 1;
  const window = m.swapWindow === 'microbatch' ? [F, B + recomputeTime] : [F + B + recomputeTime, F + B + recomputeTime];
  const swapExposedTime = Math.max(0, copy - ov * window[0]) + Math.max(0, copy - ov * window[1]);
  const addedTime = recomputeTime + swapExposedTime;
  return {
    keptBytes: K, peakBytes: (n - 1) * K + worst, baselinePeakBytes: n * total,
    forwardTime: F, backwardTime: B, recomputeTime, swapBytes, swapExposedTime, addedTime,
    addedFraction: F + B > 0 ? addedTime / (F + B) : 0,
  };
}
