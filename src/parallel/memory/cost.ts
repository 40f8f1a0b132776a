// What a memory plan costs: peak activation bytes on the device and time added per micro-batch.
//
// Peak: `simulateLifecycle` (lifecycle.ts) replays the executor's rules without tensors: release
// points in forward, prefetch d layers ahead, the backward's reads, lazy rebuilds and early releases in
// code order (BACKWARD_SCRIPT), full-recompute groups replayed at once, the other in-flight
// micro-batches' kept bytes and their embedding/head records.
//
// Time per micro-batch. With `timing` (the device's op-cost function, as the executor charges) and
// the 'microbatch' window (one stage: nothing else runs between a micro-batch's F and B), an event
// replay of the executor's timeline: layer F ops, then head; each layer's swap-outs on the D2H
// stream after its F; backward layer by layer with R (recompute, at the layer's FLOP rate without a
// launch) before B, B waiting for its H2D; layers l−1 … l−d's H2D issued when l's backward starts
// (d = plan.prefetchAhead), each after its D2H. Host links are full duplex (PCIe, HCCS): the D2H
// and H2D streams are independent, each in order; every copy pays the link latency. Added time =
// that replay minus the same replay without the plan.
// Without timing (or with the 'steady' window), a closed form:
//   recompute = Σ recomputeFlops / flops + Σ bytes / hbmBandwidth (+ recomputeCommBytes / commBandwidth);
//   swap      = S / hostBandwidth each way, exposed beyond the window F + B + recompute per direction.
// Step-time increase ≈ added / (F + B): every micro-batch's backward on the stage gets longer.
import type { SavedActivationDesc } from './descriptors.ts';
import type { MemoryPlan, PlanEntry } from './policy.ts';
import { forwardReleases, simulateLifecycle } from './lifecycle.ts';

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
  /** Embedding record bytes per micro-batch (first stage) and head/MTP record bytes (last stage). */
  preBytes?: number;
  postBytes?: number;
  /** The executor's op costs; enables the event replay of the time per micro-batch. */
  timing?: StageTiming;
  /** false: model backwards that keep every saved entry until the layer's end (no early release). */
  release?: boolean;
}

/** How the executor charges a stage's ops (pure: the device's cost functions, captured by the caller). */
export interface StageTiming {
  /** Seconds of one compute op of `flops` FLOPs (with its launch). */
  opSeconds: (flops: number) => number;
  /** Launch overhead included in opSeconds (a recompute piece of a layer pays none). */
  launch: number;
  /** Seconds of one host copy (swap-out or prefetch) of `bytes`: latency + bytes / bandwidth. */
  copySeconds: (bytes: number) => number;
  /** B FLOPs / F FLOPs of a layer (default 2). */
  backwardFactor?: number;
  /** Seconds before the first layer's forward and after its backward (embedding F, B). */
  embeddingForward?: number;
  embeddingBackward?: number;
  /** Seconds between the last layer's forward and its backward (head, MTP: F + B). */
  headSeconds?: number;
  /** Fingerprint of the inputs the functions above are built from (plan-cache.ts caches only with it). */
  key?: string;
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
  /** Where the peak is (lifecycle replay). */
  peakAt: string;
}

export function layerFlopsOf(descs: SavedActivationDesc[], m: MemoryCostModel): Map<number, number> {
  if (m.forwardFlops) return m.forwardFlops;
  const f = new Map<number, number>();
  for (const d of descs) f.set(d.layer, (f.get(d.layer) ?? 0) + d.recomputeFlops);
  return f;
}

/**
 * `memo`: a scratch object shared by calls that evaluate plans over the same entries (the planner's
 * search): the replay without a plan is computed once there instead of at every call.
 */
export function evaluatePlan(plan: MemoryPlan, m: MemoryCostModel, memo?: { base?: ReturnType<typeof replayMicroBatch> }): PlanCost {
  const n = m.inFlight;
  const entries = plan.entries;
  const full = new Set(plan.fullLayers);
  const life = simulateLifecycle(plan, { inFlight: n, preBytes: m.preBytes, postBytes: m.postBytes, release: m.release });
  const total = entries.reduce((a, e) => a + e.bytes, 0);
  const baselinePeakBytes = n * (total + (m.preBytes ?? 0) + (m.postBytes ?? 0));
  const layerFlops = layerFlopsOf(entries, m);
  const swapBytes = entries.filter((e) => e.decision === 'swap').reduce((a, e) => a + e.bytes, 0);
  const common = { keptBytes: life.keptBytes, peakBytes: life.peakBytes, baselinePeakBytes, swapBytes, peakAt: life.where };
  if (m.timing && m.swapWindow === 'microbatch') {
    const base = memo?.base ?? replayMicroBatch({ entries: entries.map((e) => ({ ...e, decision: 'keep' as const })), fullLayers: [] }, layerFlops, m.timing);
    if (memo) memo.base = base;
    const cur = replayMicroBatch(plan, layerFlops, m.timing);
    const addedTime = cur.total - base.total;
    return {
      ...common, forwardTime: base.forward, backwardTime: base.total - base.forward, recomputeTime: cur.recompute,
      swapExposedTime: Math.max(0, addedTime - cur.recompute), addedTime, addedFraction: base.total > 0 ? addedTime / base.total : 0,
    };
  }
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
  const copy = swapBytes / m.hostBandwidth;
  const ov = m.swapOverlap ?? 1;
  const window = m.swapWindow === 'microbatch' ? [F, B + recomputeTime] : [F + B + recomputeTime, F + B + recomputeTime];
  const swapExposedTime = Math.max(0, copy - ov * window[0]) + Math.max(0, copy - ov * window[1]);
  const addedTime = recomputeTime + swapExposedTime;
  return {
    ...common, forwardTime: F, backwardTime: B, recomputeTime, swapExposedTime, addedTime,
    addedFraction: F + B > 0 ? addedTime / (F + B) : 0,
  };
}

/**
 * Event replay of one micro-batch on one stage, as the executor schedules it (see the header):
 * returns its makespan, the forward part and the recompute seconds.
 */
export function replayMicroBatch(plan: MemoryPlan, layerFlops: Map<number, number>, t: StageTiming): { total: number; forward: number; recompute: number } {
  const full = new Set(plan.fullLayers);
  const layers = [...new Set(plan.entries.map((e) => e.layer))].sort((a, b) => a - b);
  const bf = t.backwardFactor ?? 2;
  const recFlops = new Map<number, number>();
  for (const e of plan.entries) if (!full.has(e.layer) && e.decision === 'recompute') recFlops.set(e.layer, (recFlops.get(e.layer) ?? 0) + e.recomputeFlops);
  // per layer, the swapped entries in D2H order (release order) and in H2D order (record order)
  const swapOut = new Map<number, PlanEntry[]>(), swapIn = new Map<number, PlanEntry[]>();
  for (const l of layers) {
    if (full.has(l)) continue;
    const es = plan.entries.filter((e) => e.layer === l);
    const outs = forwardReleases(es).order.filter((e) => e.decision === 'swap');
    if (outs.length) { swapOut.set(l, outs); swapIn.set(l, es.filter((e) => e.decision === 'swap')); }
  }
  const F = (l: number) => layerFlops.get(l) ?? 0;
  let c = t.embeddingForward ?? 0, d2h = 0, h2d = 0, recompute = 0;
  // each tensor is one copy; its H2D waits for its own D2H
  const outEnd = new Map<PlanEntry, number>(), inEnd = new Map<number, number>();
  for (const l of layers) {
    c += t.opSeconds(F(l));
    for (const e of swapOut.get(l) ?? []) { d2h = Math.max(d2h, c) + t.copySeconds(e.bytes); outEnd.set(e, d2h); }
  }
  const forward = c;
  const prefetch = (l: number | undefined, notBefore: number) => {
    if (l === undefined || inEnd.has(l) || !swapIn.has(l)) return;
    for (const e of swapIn.get(l)!) h2d = Math.max(h2d, notBefore, outEnd.get(e)!) + t.copySeconds(e.bytes);
    inEnd.set(l, h2d);
  };
  prefetch(layers[layers.length - 1], 0);
  c += t.headSeconds ?? 0;
  for (let i = layers.length - 1; i >= 0; i--) {
    const l = layers[i];
    if (full.has(l) && (i === layers.length - 1 || !full.has(layers[i + 1]) || isGroupStart(plan, layers[i + 1]))) {
      // a group's forward is replayed (one op) before its last layer's backward
      let a = i, flops = F(l);
      while (a > 0 && full.has(layers[a - 1]) && !isGroupStart(plan, layers[a])) { a--; flops += F(layers[a]); }
      const r = t.opSeconds(flops);
      recompute += r;
      c += r;
    }
    const start = c;
    const rf = full.has(l) ? 0 : (recFlops.get(l) ?? 0);
    if (rf > 0 && F(l) > 0) { const r = (rf * (t.opSeconds(F(l)) - t.launch)) / F(l); recompute += r; c += r; }
    for (let j = 1; j <= (plan.prefetchAhead ?? 1); j++) prefetch(layers[i - j], start);
    c = Math.max(c, inEnd.get(l) ?? 0) + t.opSeconds(bf * F(l));
  }
  c += t.embeddingBackward ?? 0;
  return { total: c, forward, recompute };
}

const isGroupStart = (plan: MemoryPlan, l: number) => plan.entries.some((e) => e.layer === l && e.name === 'attnNorm.x' && e.decision === 'keep');
