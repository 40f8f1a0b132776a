// A differentiable reference of the MoE layer built from plain tfjs ops, for gradient tests
// (tf.grads is the oracle, not the engine). The routing decisions come from a host RoutingPlan and
// enter only as constant 0/1 matrices (tfjs-notes P3), so autograd sees the same function as the
// hand-written backward:
//   surrogate = sum(y · dy) + lossScale · (Σ aux + z)
// One-hot matrices replace gather/scatter (no gather backward on wasm, P4): keep shapes small.
import { tf } from '../../backend/tf.ts';
import type { MoEConfig } from '../config.ts';
import type { RoutingPlan } from '../routing/plan.ts';
import { auxLossScores, auxRoutingMap, countsPerExpert } from '../routing/aux-loss.ts';

export interface ReferenceWeights {
  router: tf.Tensor;                 // [E, H]
  w1: tf.Tensor; w3: tf.Tensor;      // [E, H, F]
  w2: tf.Tensor;                     // [E, F, H]
  shared?: { w1: tf.Tensor; w3: tf.Tensor; w2: tf.Tensor; gate: tf.Tensor | null } | null;
}

export interface ReferenceOptions {
  /** Jitter noise [T, H] multiplied into the router input. */
  noise?: tf.Tensor | null;
  seqLen?: number;
  /** Constant counts of the 'global' loss (tracker average) and its T_tot. */
  global?: { counts: ArrayLike<number>; totalTokens: number } | null;
  /** Constant summed counts of the 'ep-group' loss and its T_tot. */
  epGroup?: { counts: ArrayLike<number>; totalTokens: number } | null;
}

const silu = (z: tf.Tensor) => tf.mul(z, tf.sigmoid(z));

/** Dense probs [T, E] (final, after dropping) as a differentiable function of logits, decisions fixed by `plan`. */
export function referenceProbs(logits: tf.Tensor2D, plan: RoutingPlan, moe: MoEConfig): tf.Tensor2D {
  const { T, E } = plan;
  const sel = tf.tensor2d(Float32Array.from(plan.routing.routingMap), [T, E]);  // top-k selection
  const kept = tf.tensor2d(Float32Array.from(plan.routingMap), [T, E]);         // after capacity
  let probs: tf.Tensor;
  if (moe.scoreFunction === 'sigmoid') {
    const g = tf.mul(tf.sigmoid(logits), sel);
    probs = moe.topk > 1 ? tf.div(g, tf.add(tf.sum(g, 1, true), 1e-20)) : g;
  } else if (moe.preSoftmax) probs = tf.mul(tf.softmax(logits), sel);
  else {
    const ex = tf.mul(tf.exp(logits), sel);
    probs = tf.div(ex, tf.sum(ex, 1, true));
  }
  return tf.mul(tf.mul(probs, moe.topkScalingFactor ?? 1), kept) as tf.Tensor2D;
}

/** Σ aux (+ z) as a function of logits; counts are constants. */
export function referenceAux(logits: tf.Tensor2D, plan: RoutingPlan, moe: MoEConfig, opts: ReferenceOptions = {}): tf.Scalar {
  const { T, E, k } = plan;
  let total: tf.Tensor = tf.scalar(0);
  const active = moe.auxLoss.filter((a) => a.coeff > 0);
  if (active.length) {
    let s: tf.Tensor;
    if (moe.scoreFunction === 'softmax') s = tf.softmax(logits);
    else { const sg = tf.sigmoid(logits); s = tf.div(sg, tf.sum(sg, 1, true)); }
    const map = auxRoutingMap(auxLossScores(plan.logits, T, E, moe.scoreFunction), T, E, k);
    const term = (rows: tf.Tensor, counts: ArrayLike<number>, totalTokens: number, coeff: number) =>
      tf.mul(tf.sum(tf.mul(tf.sum(rows, 0), tf.tensor1d(Float32Array.from(counts)))), (coeff * E) / (k * totalTokens * totalTokens));
    for (const a of active) {
      if (a.type === 'switch') total = tf.add(total, term(s, countsPerExpert(map, T, E), T, a.coeff));
      else if (a.type === 'seq') {
        const S = opts.seqLen ?? T, B = T / S;
        for (let b = 0; b < B; b++)
          total = tf.add(total, term(tf.slice(s, [b * S, 0], [S, E]), countsPerExpert(map, T, E, b * S, (b + 1) * S), S, a.coeff / B));
      } else if (a.type === 'global') total = tf.add(total, term(s, opts.global!.counts, opts.global!.totalTokens, a.coeff));
      else total = tf.add(total, term(s, opts.epGroup!.counts, opts.epGroup!.totalTokens, a.coeff));
    }
  }
  if (moe.zLossCoeff > 0) total = tf.add(total, tf.mul(tf.mean(tf.square(tf.logSumExp(logits, 1))), moe.zLossCoeff));
  return total as tf.Scalar;
}

/** Row-permutation matrix [N, T]: P[r, sortedIndices[r]] = 1 (permuted = P·x, unpermute = Pᵀ·y). */
export function permutationMatrix(plan: RoutingPlan): tf.Tensor2D {
  const { numRows, sortedIndices } = plan.permute;
  const m = new Float32Array(numRows * plan.T);
  for (let r = 0; r < numRows; r++) m[r * plan.T + sortedIndices[r]] = 1;
  return tf.tensor2d(m, [numRows, plan.T]);
}

/** Σ_e over expert row blocks: SwiGLU experts with the prob after the activation. x [N, H], p [N, 1] → [N, H]. */
export function referenceExperts(x: tf.Tensor, p: tf.Tensor, w: Pick<ReferenceWeights, 'w1' | 'w3' | 'w2'>, counts: number[]): tf.Tensor {
  const [, H, F] = w.w1.shape;
  const parts: tf.Tensor[] = [];
  let row = 0;
  counts.forEach((c, e) => {
    if (c === 0) return;
    const xe = tf.slice(x, [row, 0], [c, H]), pe = tf.slice(p, [row, 0], [c, 1]);
    const w1 = tf.reshape(tf.slice(w.w1, [e, 0, 0], [1, H, F]), [H, F]), w3 = tf.reshape(tf.slice(w.w3, [e, 0, 0], [1, H, F]), [H, F]);
    const w2 = tf.reshape(tf.slice(w.w2, [e, 0, 0], [1, F, H]), [F, H]);
    parts.push(tf.matMul(tf.mul(tf.mul(silu(tf.matMul(xe, w1)), tf.matMul(xe, w3)), pe), w2));
    row += c;
  });
  return parts.length ? tf.concat(parts, 0) : tf.zeros([0, H]);
}

/** Dense shared expert x [T, H] → [T, H] (weights [in, out], optional sigmoid gate [H, 1]). */
export function referenceShared(x: tf.Tensor, s: NonNullable<ReferenceWeights['shared']>): tf.Tensor {
  const y = tf.matMul(tf.mul(silu(tf.matMul(x, s.w1)), tf.matMul(x, s.w3)), s.w2);
  return s.gate ? tf.mul(y, tf.sigmoid(tf.matMul(x, s.gate))) : y;
}

/** The whole layer: y [T, H] and Σaux+z, for x [T, H]. */
export function referenceMoELayer(x: tf.Tensor2D, w: ReferenceWeights, plan: RoutingPlan, moe: MoEConfig,
  opts: ReferenceOptions = {}): { y: tf.Tensor2D; aux: tf.Scalar } {
  const xr = opts.noise ? tf.mul(x, opts.noise) : x;
  const logits = tf.matMul(xr, w.router, false, true) as tf.Tensor2D;               // [T, E]
  const probs = referenceProbs(logits, plan, moe);                                    // [T, E]
  const { numRows, sortedIndices, expertOfRow, tokensPerExpert } = plan.permute;
  const pick = new Float32Array(numRows * plan.T * plan.E);                           // [N, T·E] one-hot of (t, e) per row
  for (let r = 0; r < numRows; r++) pick[r * plan.T * plan.E + sortedIndices[r] * plan.E + expertOfRow[r]] = 1;
  const permutedProbs = tf.matMul(tf.tensor2d(pick, [numRows, plan.T * plan.E]), tf.reshape(probs, [plan.T * plan.E, 1])); // [N, 1]
  const P = permutationMatrix(plan);
  const yPerm = referenceExperts(tf.matMul(P, x), permutedProbs, w, tokensPerExpert);
  let y = tf.matMul(P, yPerm, true, false);                                           // [T, H]
  if (w.shared) y = tf.add(y, referenceShared(x, w.shared));
  return { y: y as tf.Tensor2D, aux: referenceAux(logits, plan, moe, opts) };
}
