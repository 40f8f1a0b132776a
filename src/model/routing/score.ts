// Score functions + top-k → probs and routingMap (Megatron `topk_routing_with_score_function`,
// moe-semantics §2), and its hand-written backward dprobs → dlogits. Host arrays, row-major.
//
//   softmax, preSoftmax=false: idx = topk(logits);        probs = softmax(logits[idx])       (rows sum to 1)
//   softmax, preSoftmax=true:  idx = topk(softmax(l));    probs = softmax(l)[idx]            (no renormalisation)
//   sigmoid:                   idx = topk(σ(l) + bias);   probs = σ(l)[idx] / Σ (k > 1)      (bias: selection only)
//   always:                    probs *= topkScalingFactor
import { softmaxRows, sigmoid, topkRows, groupLimitedTopk, indicesToMap } from './topk.ts';
import type { MoEConfig } from '../config.ts';

export type ScoreOptions = Pick<MoEConfig, 'scoreFunction' | 'preSoftmax' | 'topk' | 'numGroups' | 'groupTopk' | 'topkScalingFactor'>;

export interface TopkRouting {
  T: number; E: number; k: number;
  opts: ScoreOptions;
  /** Score-function output: logits (post-softmax path), softmax(logits) (pre) or σ(logits). [T, E] */
  scores: Float64Array;
  /** What top-k ran on (group ranking included): scores, plus the expert bias on the sigmoid path. [T, E] */
  selectionScores: Float64Array;
  /** Selected experts, largest selection score first. [T, k] */
  topkIdx: Int32Array;
  /** Combine weights of the selected experts before the scaling factor. [T, k] */
  topkWeights: Float64Array;
  /** Dense probs (scaled, zeros off the top-k), built on first read. [T, E] */
  probs: Float64Array;
  /** 1 where the token routes to the expert, built on first read. [T, E] */
  routingMap: Uint8Array;
}

/** Route T tokens from logits [T, E]; `expertBias` [E] (sigmoid only) shifts selection, never the weights. */
export function topkRouting(logits: ArrayLike<number>, T: number, E: number, opts: ScoreOptions,
  expertBias: ArrayLike<number> | null = null, precomputedScores: Float64Array | null = null): TopkRouting {
  const k = opts.topk;
  let scores: Float64Array;
  if (precomputedScores) scores = precomputedScores; // the score function's output, computed by the caller (plan.ts fuses σ with the z-loss)
  else if (opts.scoreFunction === 'sigmoid') scores = sigmoid(logits);
  else if (opts.preSoftmax) scores = softmaxRows(logits, T, E);
  else scores = new Float64Array(logits); // a copy (TypedArray.from would iterate: slow)
  let selectionScores = scores;
  if (opts.scoreFunction === 'sigmoid' && expertBias) {
    selectionScores = new Float64Array(T * E);
    for (let t = 0; t < T; t++) for (let e = 0; e < E; e++) selectionScores[t * E + e] = scores[t * E + e] + expertBias[e];
  }
  const topkIdx = opts.numGroups !== null && opts.groupTopk !== null
    ? groupLimitedTopk(selectionScores, T, E, k, opts.numGroups, opts.groupTopk)
    : topkRows(selectionScores, T, E, k);

  const topkWeights = new Float64Array(T * k);
  for (let t = 0; t < T; t++) {
    const w = t * k;
    if (opts.scoreFunction === 'softmax' && !opts.preSoftmax) {
      // softmax over the k selected logits
      let m = -Infinity;
      for (let j = 0; j < k; j++) m = Math.max(m, scores[t * E + topkIdx[w + j]]);
      let s = 0;
      for (let j = 0; j < k; j++) { const v = Math.exp(scores[t * E + topkIdx[w + j]] - m); topkWeights[w + j] = v; s += v; }
      for (let j = 0; j < k; j++) topkWeights[w + j] /= s;
    } else {
      for (let j = 0; j < k; j++) topkWeights[w + j] = scores[t * E + topkIdx[w + j]];
      if (opts.scoreFunction === 'sigmoid' && k > 1) {
        let s = 0;
        for (let j = 0; j < k; j++) s += topkWeights[w + j];
        for (let j = 0; j < k; j++) topkWeights[w + j] /= s + 1e-20;
      }
    }
  }
  const r = { T, E, k, opts, scores, selectionScores, topkIdx, topkWeights } as TopkRouting;
  // the dense [T, E] views are built on first use only: the MoE layer's dropless path works on [T, k]
  lazyField(r, 'probs', () => denseProbs(topkIdx, topkWeights, opts.topkScalingFactor ?? 1, T, E, k));
  lazyField(r, 'routingMap', () => indicesToMap(topkIdx, T, E, k));
  return r;
}

/** Dense scaled probs [T, E] from the top-k indices and weights [T, k]. */
export function denseProbs(topkIdx: Int32Array, topkWeights: ArrayLike<number>, scale: number, T: number, E: number, k: number): Float64Array {
  const probs = new Float64Array(T * E);
  for (let t = 0; t < T; t++) for (let j = 0; j < k; j++) probs[t * E + topkIdx[t * k + j]] = topkWeights[t * k + j] * scale;
  return probs;
}

/** obj[key] computed by `make` on first read (then cached); assignable. Enumerable like a plain field. */
export function lazyField<T extends object>(obj: T, key: keyof T & string, make: () => unknown): void {
  let v: unknown, has = false;
  Object.defineProperty(obj, key, {
    get: () => { if (!has) { v = make(); has = true; } return v; },
    set: (x: unknown) => { v = x; has = true; },
    enumerable: true, configurable: true,
  });
}

/**
 * Backward of `topkRouting`: dprobs [T, E] (gradient w.r.t. the dense scaled probs; only the selected
 * entries are read) → dlogits [T, E]. Selection carries no gradient.
 */
export function topkRoutingBackward(r: TopkRouting, dprobs: ArrayLike<number>): Float64Array {
  const { T, E, k, topkIdx } = r;
  const dTopk = new Float64Array(T * k);
  for (let t = 0; t < T; t++) for (let j = 0; j < k; j++) dTopk[t * k + j] = dprobs[t * E + topkIdx[t * k + j]];
  return topkRoutingBackwardSparse(r, dTopk, new Float64Array(T * E));
}

/** The same from the gradient w.r.t. the k selected probs, dTopk [T, k]; adds into dlogits [T, E] and returns it. */
export function topkRoutingBackwardSparse<A extends Float32Array | Float64Array>(r: TopkRouting, dTopk: ArrayLike<number>, dlogits: A): A {
  const { T, E, k, opts, scores, topkIdx, topkWeights } = r;
  const scale = opts.topkScalingFactor ?? 1;
  const dw = new Float64Array(k);
  for (let t = 0; t < T; t++) {
    const o = t * E, w = t * k;
    for (let j = 0; j < k; j++) dw[j] = dTopk[w + j] * scale;
    if (opts.scoreFunction === 'softmax' && !opts.preSoftmax) {
      // p = softmax(l_sel): dl_j = p_j (dp_j − Σ_i dp_i p_i)
      let dot = 0;
      for (let j = 0; j < k; j++) dot += dw[j] * topkWeights[w + j];
      for (let j = 0; j < k; j++) dlogits[o + topkIdx[w + j]] += topkWeights[w + j] * (dw[j] - dot);
    } else if (opts.scoreFunction === 'softmax') {
      // p = s[idx], s = softmax(l): ds sparse on idx, dl = s ⊙ (ds − Σ ds·s)
      let dot = 0;
      for (let j = 0; j < k; j++) dot += dw[j] * scores[o + topkIdx[w + j]];
      if (dot !== 0) for (let e = 0; e < E; e++) dlogits[o + e] -= scores[o + e] * dot;
      for (let j = 0; j < k; j++) dlogits[o + topkIdx[w + j]] += scores[o + topkIdx[w + j]] * dw[j];
    } else {
      // g = σ(l)[idx], p = g / (Σg + 1e-20): dg_j = dp_j/S − Σ_i dp_i g_i / S²; dl = dg·σ(1−σ)
      let S = 0, dot = 0;
      for (let j = 0; j < k; j++) { const g = scores[o + topkIdx[w + j]]; S += g; dot += dw[j] * g; }
      for (let j = 0; j < k; j++) {
        const e = topkIdx[w + j], s = scores[o + e];
        const dg = k > 1 ? dw[j] / (S + 1e-20) - dot / ((S + 1e-20) * (S + 1e-20)) : dw[j];
        dlogits[o + e] += dg * s * (1 - s);
      }
    }
  }
  return dlogits;
}
