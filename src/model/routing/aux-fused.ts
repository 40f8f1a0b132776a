// The aux losses of one router call, fused for speed: the same values and ∂/∂logits as the functions
// of aux-loss.ts (which stay the readable reference and are what users call), computed in one pass
// over the rows without [T, E] temporaries. routeTokens uses this; the golden and tf.grads tests
// check it against an independent NumPy implementation and autograd.
//
// Every loss is Σ_t Σ_e s[t,e]·w[b(t), e] with a constant weight vector per sequence b, so
//   value = Σ_b Σ_e colSum_b[e]·w_b[e],   ∂/∂s[t,e] = W[b(t), e] (the sum over losses),
// and ∂/∂logits goes through the aux-score function row by row.
import type { MoEConfig } from '../config.ts';
import type { TopkRouting } from './score.ts';
import { topkRows } from './topk.ts';
import type { GlobalAuxTracker } from './aux-loss.ts';

export interface FusedAuxOptions {
  seqLen?: number;
  /** The selection was changed by the expert bias or groups: the aux map needs its own top-k. */
  selectionModified: boolean;
  globalTracker?: GlobalAuxTracker | null;
  updateGlobalTracker?: boolean;
  globalGroupSize?: number;
  epGroupCounts?: ((localCounts: Float64Array) => Float64Array[]) | null;
}

/** Values by type (times coeff); adds Σ ∂aux/∂logits into `into` [T, E]. */
export function fusedAuxLosses(logits: ArrayLike<number>, routing: TopkRouting, moe: MoEConfig, opts: FusedAuxOptions,
  into: Float64Array): Record<string, number> {
  const { T, E, k } = routing;
  const active = moe.auxLoss.filter((a) => a.coeff > 0);
  // aux map = plain top-k of the aux scores; σ/Σσ and softmax keep each row's order, so rank the router's scores.
  // Counted from the [T, k] indices (no dense map).
  const idx = opts.selectionModified ? topkRows(routing.scores, T, E, k) : routing.topkIdx;
  const counts = (t0: number, t1: number) => countsOfIdx(idx, k, E, t0, t1);
  const S = active.some((a) => a.type === 'seq') ? opts.seqLen ?? T : T;
  const B = T / S;
  if (!Number.isInteger(B)) throw new Error(`seq aux loss: T=${T} is not a multiple of seqLen=${S}`);

  // per-loss weight vectors w [B or 1, E]
  const terms: { type: string; w: Float64Array; perSeq: boolean }[] = [];
  const weights = (counts: ArrayLike<number>, totalTokens: number, coeff: number) =>
    Float64Array.from({ length: E }, (_, e) => ((coeff * E) / (k * totalTokens * totalTokens)) * counts[e]);
  for (const a of active) {
    if (a.type === 'switch') terms.push({ type: a.type, w: weights(counts(0, T), T, a.coeff), perSeq: false });
    else if (a.type === 'seq') {
      const w = new Float64Array(B * E);
      for (let b = 0; b < B; b++) w.set(weights(counts(b * S, (b + 1) * S), S, a.coeff / B), b * E);
      terms.push({ type: a.type, w, perSeq: true });
    } else if (a.type === 'global') {
      const tracker = opts.globalTracker;
      if (!tracker) throw new Error(`'global' aux loss needs a GlobalAuxTracker`);
      if (opts.updateGlobalTracker ?? true) tracker.add(counts(0, T));
      terms.push({ type: a.type, w: weights(tracker.average(), T * (opts.globalGroupSize ?? 1), a.coeff), perSeq: false });
    } else {
      const local = counts(0, T);
      const group = opts.epGroupCounts ? opts.epGroupCounts(local) : [local];
      const sum = new Float64Array(E);
      for (const c of group) for (let e = 0; e < E; e++) sum[e] += c[e];
      terms.push({ type: a.type, w: weights(sum, T * group.length, a.coeff), perSeq: false });
    }
  }
  const W = new Float64Array(B * E);                     // Σ over losses, [B, E]
  for (const { w, perSeq } of terms) for (let b = 0; b < B; b++) for (let e = 0; e < E; e++) W[b * E + e] += w[(perSeq ? b * E : 0) + e];

  const colSum = new Float64Array(B * E);                // Σ_t∈b s[t, e]
  const row = new Float64Array(E);                       // aux scores of the current token
  const sigmoid = moe.scoreFunction === 'sigmoid', pre = moe.preSoftmax;
  const sc = routing.scores;                             // σ (sigmoid) or softmax (pre-softmax) or logits
  for (let t = 0; t < T; t++) {
    const o = t * E, b = Math.floor(t / S), wo = b * E;
    let sum = 0;
    if (sigmoid) {
      // row = σ/Σσ without materialising it: dot = Σ W·σ / Σσ, then one pass for colSum and the gradient
      let ws = 0;
      for (let e = 0; e < E; e++) { const s = sc[o + e]; sum += s; ws += W[wo + e] * s; }
      const inv = 1 / sum, dot = ws * inv;
      for (let e = 0; e < E; e++) {
        const s = sc[o + e];
        colSum[wo + e] += s * inv;
        into[o + e] += (W[wo + e] - dot) * inv * s * (1 - s);
      }
      continue;
    }
    if (pre) for (let e = 0; e < E; e++) row[e] = sc[o + e];
    else {
      let m = -Infinity;
      for (let e = 0; e < E; e++) m = Math.max(m, logits[o + e]);
      for (let e = 0; e < E; e++) { row[e] = Math.exp(logits[o + e] - m); sum += row[e]; }
      for (let e = 0; e < E; e++) row[e] /= sum;
    }
    let dot = 0;
    for (let e = 0; e < E; e++) { dot += W[wo + e] * row[e]; colSum[wo + e] += row[e]; }
    for (let e = 0; e < E; e++) into[o + e] += row[e] * (W[wo + e] - dot);
  }
  const values: Record<string, number> = {};
  for (const { type, w, perSeq } of terms) {
    let v = 0;
    for (let b = 0; b < B; b++) for (let e = 0; e < E; e++) v += colSum[b * E + e] * w[(perSeq ? b * E : 0) + e];
    values[type] = (values[type] ?? 0) + v;
  }
  return values;
}

/** Tokens per expert over rows [t0, t1) of top-k indices [T, k]. [E] */
export function countsOfIdx(idx: Int32Array, k: number, E: number, t0: number, t1: number): Float64Array {
  const c = new Float64Array(E);
  for (let i = t0 * k; i < t1 * k; i++) c[idx[i]]++;
  return c;
}

/**
 * σ(logits) [T, E] and the router z-loss (aux-loss.ts `zLoss`, same value and gradient, added into
 * `into`) with ONE exp per logit: v = exp(l − m) (m = row max) gives both Σv for the log-sum-exp and
 * σ(l) = v / (v + exp(−m)). Rows whose exp(−m) overflows, or entries whose v underflows, use
 * 1/(1 + exp(−l)) directly.
 */
export function sigmoidWithZLoss(logits: ArrayLike<number>, T: number, E: number, coeff: number, into: Float64Array): { scores: Float64Array; z: number } {
  const scores = new Float64Array(T * E);
  const row = new Float64Array(E);
  let value = 0;
  for (let t = 0; t < T; t++) {
    const o = t * E;
    let m = -Infinity;
    for (let e = 0; e < E; e++) { const l = logits[o + e]; if (l > m) m = l; }
    let sum = 0;
    for (let e = 0; e < E; e++) { const v = Math.exp(logits[o + e] - m); row[e] = v; sum += v; }
    const em = Math.exp(-m), direct = !(em < 1e300);
    for (let e = 0; e < E; e++) {
      const v = row[e];
      scores[o + e] = direct || v === 0 ? 1 / (1 + Math.exp(-logits[o + e])) : v / (v + em);
    }
    const lse = m + Math.log(sum);
    value += lse * lse;
    const g = (2 * coeff * lse) / (T * sum);
    for (let e = 0; e < E; e++) into[o + e] += g * row[e];
  }
  return { scores, z: (coeff * value) / T };
}
