// Load-balancing auxiliary losses and the router z-loss, values and gradients (moe-semantics §5).
// Host arrays, row-major [T, E]. Tokens are flattened batch-major: t = b·S + s (ultramoe's choice;
// Megatron is sequence-major), so sequence b owns the contiguous rows [b·S, (b+1)·S).
//
// Every balancing loss is Megatron's `switch_load_balancing_loss_func`:
//   aux = coeff · E / (k · T_tot²) · Σ_e (Σ_t s[t,e]) · count_e,   ∂aux/∂s[t,e] = coeff·E·count_e / (k·T_tot²)
// and they differ only in where `count_e` and T_tot come from (counts carry no gradient):
//   switch:   this micro-batch's aux map, T_tot = T
//   seq:      per sequence with T = S, averaged over the B sequences
//   global:   running average of counts over the micro-batches of a global batch (and a DP group)
//   ep-group: counts summed over the EP group's ranks, T_tot = Σ ranks' T
import { softmaxRows, sigmoid, topkRows, indicesToMap } from './topk.ts';
import type { ScoreFunction } from '../config.ts';

export interface AuxLossResult {
  value: number;
  /** ∂value/∂scores (aux scores). [T, E] */
  dScores: Float64Array;
}

/**
 * Scores the aux losses use: softmax over all E, or σ(l)/Σσ(l) (rows sum to 1). [T, E]
 * `sig` = σ(logits) when already computed (the router's sigmoid scores): saves an exp pass.
 */
export function auxLossScores(logits: ArrayLike<number>, T: number, E: number, scoreFunction: ScoreFunction,
  sig: Float64Array | null = null): Float64Array {
  if (scoreFunction === 'softmax') return softmaxRows(logits, T, E);
  const s = sig ? sig.slice() : sigmoid(logits);
  for (let t = 0; t < T; t++) {
    let sum = 0;
    for (let e = 0; e < E; e++) sum += s[t * E + e];
    for (let e = 0; e < E; e++) s[t * E + e] /= sum;
  }
  return s;
}

/** Backward of `auxLossScores`: dScores [T, E] → dlogits [T, E]. */
export function auxLossScoresBackward(logits: ArrayLike<number>, auxScores: Float64Array, dScores: ArrayLike<number>,
  T: number, E: number, scoreFunction: ScoreFunction, sigAll: Float64Array | null = null): Float64Array {
  const dl = new Float64Array(T * E);
  const sig = new Float64Array(E);
  for (let t = 0; t < T; t++) {
    const o = t * E;
    let dot = 0;
    for (let e = 0; e < E; e++) dot += dScores[o + e] * auxScores[o + e];
    if (scoreFunction === 'softmax') {
      for (let e = 0; e < E; e++) dl[o + e] = auxScores[o + e] * (dScores[o + e] - dot);
    } else {
      // s = σ/Σσ: dσ_e = (ds_e − Σ ds·s) / Σσ; dl = dσ·σ(1−σ)
      let sum = 0;
      for (let e = 0; e < E; e++) { sig[e] = sigAll ? sigAll[o + e] : 1 / (1 + Math.exp(-logits[o + e])); sum += sig[e]; }
      for (let e = 0; e < E; e++) dl[o + e] = ((dScores[o + e] - dot) / sum) * sig[e] * (1 - sig[e]);
    }
  }
  return dl;
}

/** The aux map: plain top-k of the aux scores (no expert bias, no groups, no dropping). [T, E] */
export function auxRoutingMap(auxScores: ArrayLike<number>, T: number, E: number, k: number): Uint8Array {
  return indicesToMap(topkRows(auxScores, T, E, k), T, E, k);
}

/** Σ_t map[t, e] over rows [t0, t1). [E] */
export function countsPerExpert(map: Uint8Array, T: number, E: number, t0 = 0, t1 = T): Float64Array {
  const c = new Float64Array(E);
  for (let t = t0; t < t1; t++) for (let e = 0; e < E; e++) c[e] += map[t * E + e];
  return c;
}

/** Megatron's `switch_load_balancing_loss_func` on rows [t0, t1) of scores, with given counts and T_tot. */
export function switchLoadBalancingLoss(scores: ArrayLike<number>, T: number, E: number, k: number, counts: ArrayLike<number>,
  totalTokens: number, coeff: number, t0 = 0, t1 = T, dScores: Float64Array = new Float64Array(T * E)): AuxLossResult {
  const c = (coeff * E) / (k * totalTokens * totalTokens);
  let value = 0;
  for (let t = t0; t < t1; t++) {
    for (let e = 0; e < E; e++) {
      value += scores[t * E + e] * counts[e];
      dScores[t * E + e] += c * counts[e];
    }
  }
  return { value: value * c, dScores };
}

/** Switch (per micro-batch) aux loss. */
export function switchAuxLoss(scores: ArrayLike<number>, auxMap: Uint8Array, T: number, E: number, k: number, coeff: number,
  into?: Float64Array): AuxLossResult {
  return switchLoadBalancingLoss(scores, T, E, k, countsPerExpert(auxMap, T, E), T, coeff, 0, T, into);
}

/** Sequence-level aux loss (DeepSeek-V2/V3): mean over the T/seqLen sequences of the switch loss with T = seqLen. */
export function seqAuxLoss(scores: ArrayLike<number>, auxMap: Uint8Array, T: number, E: number, k: number, seqLen: number,
  coeff: number, dScores: Float64Array = new Float64Array(T * E)): AuxLossResult {
  const B = T / seqLen;
  if (!Number.isInteger(B)) throw new Error(`seqAuxLoss: T=${T} is not a multiple of seqLen=${seqLen}`);
  let value = 0;
  for (let b = 0; b < B; b++) {
    const t0 = b * seqLen, t1 = t0 + seqLen;
    value += switchLoadBalancingLoss(scores, T, E, k, countsPerExpert(auxMap, T, E, t0, t1), seqLen, coeff / B, t0, t1, dScores).value;
  }
  return { value, dScores };
}

/** Running aux-map counts over the micro-batches of a global batch (Megatron's global_tokens_per_expert, ga_steps). */
export class GlobalAuxTracker {
  counts: Float64Array;
  steps = 0;
  constructor(readonly numExperts: number) { this.counts = new Float64Array(numExperts); }
  /** Add one micro-batch's counts (already summed over the group). */
  add(counts: ArrayLike<number>): void { for (let e = 0; e < this.numExperts; e++) this.counts[e] += counts[e]; this.steps++; }
  /** counts / steps. [E] */
  average(): Float64Array { return this.counts.map((c) => c / Math.max(this.steps, 1)); }
  /** End of the global batch. */
  reset(): void { this.counts.fill(0); this.steps = 0; }
}

/** Global aux loss: running-average counts of the tracker (which already includes this micro-batch), T_tot = T·groupSize. */
export function globalAuxLoss(scores: ArrayLike<number>, T: number, E: number, k: number, tracker: GlobalAuxTracker,
  coeff: number, groupSize = 1, into?: Float64Array): AuxLossResult {
  return switchLoadBalancingLoss(scores, T, E, k, tracker.average(), T * groupSize, coeff, 0, T, into);
}

/** EP-group aux loss: the counts of every rank of the EP group (own included) are summed; T_tot = Σ T of the ranks. */
export function epGroupAuxLoss(scores: ArrayLike<number>, T: number, E: number, k: number, groupCounts: ArrayLike<number>[],
  coeff: number, groupTokens = T * groupCounts.length, into?: Float64Array): AuxLossResult {
  const counts = new Float64Array(E);
  for (const c of groupCounts) for (let e = 0; e < E; e++) counts[e] += c[e];
  return switchLoadBalancingLoss(scores, T, E, k, counts, groupTokens, coeff, 0, T, into);
}

/**
 * Router z-loss (ST-MoE): z = coeff · mean_t lse_t², ∂z/∂l[t,e] = 2·coeff·lse_t·softmax(l)[t,e] / T.
 * One exp per entry; the gradient is added to `into` when given (else a fresh array).
 */
export function zLoss(logits: ArrayLike<number>, T: number, E: number, coeff: number, into?: Float64Array): { value: number; dLogits: Float64Array } {
  const dLogits = into ?? new Float64Array(T * E);
  const row = new Float64Array(E);
  let value = 0;
  for (let t = 0; t < T; t++) {
    const o = t * E;
    let m = -Infinity;
    for (let e = 0; e < E; e++) m = Math.max(m, logits[o + e]);
    let sum = 0;
    for (let e = 0; e < E; e++) { const v = Math.exp(logits[o + e] - m); row[e] = v; sum += v; }
    const lse = m + Math.log(sum);
    value += lse * lse;
    const g = (2 * coeff * lse) / (T * sum);
    for (let e = 0; e < E; e++) dLogits[o + e] += g * row[e];
  }
  return { value: (coeff * value) / T, dLogits };
}
