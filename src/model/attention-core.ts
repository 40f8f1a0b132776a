// Causal softmax attention core shared by GQA and MLA, on head-major batches:
//   q [G, S, dk], k [G, S, dk], v [G, S, dv] with G = B·heads (batched matMuls).
//   scores = q·kᵀ·scale + causalMask, probs = softmax(scores), ctx = probs·v.
// Saves `<tag>.probs` [G, S, S] only; the caller saves q/k/v in whatever form it prefers
// (MLA keeps the up-projection output instead of k and v).
import { tf } from '../backend/tf.ts';
import { softmaxBackward } from '../backend/fused-softmax.ts';
import type { Restorer, SavedActivations } from './saved.ts';

const maskCache = new Map<number, Float32Array>();

/** Additive causal mask [S, S]: 0 on and below the diagonal, −1e9 above (exp underflows to 0). */
export function causalMask(S: number): tf.Tensor2D {
  let m = maskCache.get(S);
  if (!m) {
    m = new Float32Array(S * S);
    for (let i = 0; i < S; i++) for (let j = i + 1; j < S; j++) m[i * S + j] = -1e9;
    maskCache.set(S, m);
  }
  return tf.tensor2d(m, [S, S]);
}

/** ctx [G, S, dv]; saves `<tag>.probs`. */
export function attentionCoreForward(q: tf.Tensor3D, k: tf.Tensor3D, v: tf.Tensor3D, scale: number, rec: SavedActivations | null, tag: string,
  restoreProbs: Restorer | null = null): tf.Tensor3D {
  const probs = attentionProbs(q, k, scale);
  rec?.save(`${tag}.probs`, probs, restoreProbs);
  return tf.matMul(probs, v); // [G, S, dv]
}

/** softmax(q·kᵀ·scale + causal mask) [G, S, S]. */
export function attentionProbs(q: tf.Tensor3D, k: tf.Tensor3D, scale: number): tf.Tensor3D {
  // scale q ([G, S, dk]) rather than the scores ([G, S, S])
  const scores = tf.add(tf.matMul(tf.mul(q, scale), k, false, true), causalMask(q.shape[1])); // [G, S, S]
  return tf.softmax(scores) as tf.Tensor3D;
}

/** dq, dk, dv from dctx [G, S, dv]. */
export function attentionCoreBackward(dctx: tf.Tensor3D, q: tf.Tensor3D, k: tf.Tensor3D, v: tf.Tensor3D, probs: tf.Tensor3D, scale: number): { dq: tf.Tensor3D; dk: tf.Tensor3D; dv: tf.Tensor3D } {
  const dv = tf.matMul(probs, dctx, true, false);        // [G, S, dv]
  const dprobs = tf.matMul(dctx, v, false, true);        // [G, S, S]
  // softmax backward with the 1/sqrt(d) scale folded in: one fused kernel, no scaling of q or dq
  const dscores = softmaxBackward(probs, dprobs, scale);        // scale·∂L/∂scores [G, S, S]
  const dq = tf.matMul(dscores, k);                             // [G, S, dk]
  const dk = tf.matMul(dscores, q, true, false);                // [G, S, dk]
  return { dq, dk, dv } as { dq: tf.Tensor3D; dk: tf.Tensor3D; dv: tf.Tensor3D };
}

/** [B, S, n, d] → [B·n, S, d] (head-major for the core). */
export function toHeads(x: tf.Tensor): tf.Tensor3D {
  const [B, S, n, d] = x.shape;
  return tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [B * n, S, d]);
}

/** [B·n, S, d] → [B, S, n, d]. */
export function fromHeads(x: tf.Tensor, B: number): tf.Tensor4D {
  const [G, S, d] = x.shape;
  return tf.transpose(tf.reshape(x, [B, G / B, S, d]), [0, 2, 1, 3]);
}

// Key-transposed variants (MLA): kT [G, dk, S], vT [G, dv, S]. Building K and V in this layout
// makes MLA's per-head [nope | rope] concat and [k | v] split outer-axis copies (long contiguous
// runs) instead of last-axis ones (32- and 16-float runs, slow on wasm).

/** softmax(q·kT·scale + mask) [G, Sq, Sk] with kT [G, dk, Sk]; mask [Sq, Sk] (default: causal, Sq = Sk;
 *  context parallelism passes one by global position, parallel/cp/chunking.ts). */
export function attentionProbsKT(q: tf.Tensor3D, kT: tf.Tensor3D, scale: number, mask?: tf.Tensor2D): tf.Tensor3D {
  const scores = tf.add(tf.matMul(tf.mul(q, scale), kT), mask ?? causalMask(q.shape[1])); // [G, Sq, Sk]
  return tf.softmax(scores) as tf.Tensor3D;
}

/** ctx [G, Sq, dv] from vT [G, dv, Sk]; saves `<tag>.probs`. */
export function attentionCoreForwardKT(q: tf.Tensor3D, kT: tf.Tensor3D, vT: tf.Tensor3D, scale: number, rec: SavedActivations | null, tag: string,
  restoreProbs: Restorer | null = null, mask?: tf.Tensor2D): tf.Tensor3D {
  const probs = attentionProbsKT(q, kT, scale, mask);
  rec?.save(`${tag}.probs`, probs, restoreProbs);
  return tf.matMul(probs, vT, false, true); // [G, S, dv]
}

/** dq [G, Sq, dk], dkT [G, dk, Sk], dvT [G, dv, Sk] from dctx [G, Sq, dv] (any mask). */
export function attentionCoreBackwardKT(dctx: tf.Tensor3D, q: tf.Tensor3D, kT: tf.Tensor3D, vT: tf.Tensor3D, probs: tf.Tensor3D, scale: number): { dq: tf.Tensor3D; dkT: tf.Tensor3D; dvT: tf.Tensor3D } {
  const dvT = tf.matMul(dctx, probs, true, false);       // [G, dv, S]
  const dprobs = tf.matMul(dctx, vT);                    // [G, S, S]
  const dscores = softmaxBackward(probs, dprobs, scale);         // scale·∂L/∂scores [G, S, S] (one fused kernel)
  const dq = tf.matMul(dscores, kT, false, true);                // [G, S, dk]
  const dkT = tf.matMul(q, dscores, true, false);                // [G, dk, S]
  return { dq, dkT, dvT } as { dq: tf.Tensor3D; dkT: tf.Tensor3D; dvT: tf.Tensor3D };
}
