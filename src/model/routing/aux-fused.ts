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
import { topkRows, indicesToMap } from './topk.ts';
import { countsPerExpert, type GlobalAuxTracker } from './aux-loss.ts';

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
  // aux map = plain top-k of the aux scores; σ/Σσ and softmax keep each row's order, so rank the router's scores
  const map = opts.selectionModified ? indicesToMap(topkRows(routing.scores, T, E, k), T, E, k) : routing.routingMap;
  const S = active.some((a) => a.type === 'seq') ? opts.seqLen ?? T : T;
  const B = T / S;
  if (!Number.isInteger(B)) throw new Error(`seq aux loss: T=${T} is not a multiple of seqLen=${S}`);

  // per-loss weight vectors w [B or 1, E]
  const terms: { type: string; w: Float64Array; perSeq: boolean }[] = [];
  const weights = (counts: ArrayLike<number>, totalTokens: number, coeff: number) =>
    Float64Array.from({ length: E }, (_, e) => ((coeff * E) / (k * totalTokens * totalTokens)) * counts[e]);
  for (const a of active) {
    if (a.type === 'switch') terms.push({ type: a.type, w: weights(countsPerExpert(map, T, E), T, a.coeff), perSeq: false });
    else if (a.type === 'seq') {
      const w = new Float64Array(B * E);
      for (let b = 0; b < B; b++) w.set(weights(countsPerExpert(map, T, E, b * S, (b + 1) * S), S, a.coeff / B), b * E);
      terms.push({ type: a.type, w, perSeq: true });
    } else if (a.type === 'global') {
      const tracker = opts.globalTracker;
      if (!tracker) throw new Error(`'global' aux loss needs a GlobalAuxTracker`);
      if (opts.updateGlobalTracker ?? true) tracker.add(countsPerExpert(map, T, E));
      terms.push({ type: a.type, w: weights(tracker.average(), T * (opts.globalGroupSize ?? 1), a.coeff), perSeq: false });
    } else {
      const local = countsPerExpert(map, T, E);
      const group = opts.epGroupCounts ? opts.epGroupCounts(local) : [local];
      const counts = new Float64Array(E);
      for (const c of group) for (let e = 0; e < E; e++) counts[e] += c[e];
      terms.push({ type: a.type, w: weights(counts, T * group.length, a.coeff), perSeq: false });
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
    if (sigmoid) { for (let e = 0; e < E; e++) sum += sc[o + e]; for (let e = 0; e < E; e++) row[e] = sc[o + e] / sum; }
    else if (pre) for (let e = 0; e < E; e++) row[e] = sc[o + e];
    else {
      let m = -Infinity;
      for (let e = 0; e < E; e++) m = Math.max(m, logits[o + e]);
      for (let e = 0; e < E; e++) { row[e] = Math.exp(logits[o + e] - m); sum += row[e]; }
      for (let e = 0; e < E; e++) row[e] /= sum;
    }
    let dot = 0;
    for (let e = 0; e < E; e++) { dot += W[wo + e] * row[e]; colSum[wo + e] += row[e]; }
    if (sigmoid) for (let e = 0; e < E; e++) { const s = sc[o + e]; into[o + e] += ((W[wo + e] - dot) / sum) * s * (1 - s); }
    else for (let e = 0; e < E; e++) into[o + e] += row[e] * (W[wo + e] - dot);
  }
  const values: Record<string, number> = {};
  for (const { type, w, perSeq } of terms) {
    let v = 0;
    for (let b = 0; b < B; b++) for (let e = 0; e < E; e++) v += colSum[b * E + e] * w[(perSeq ? b * E : 0) + e];
    values[type] = (values[type] ?? 0) + v;
  }
  return values;
}
