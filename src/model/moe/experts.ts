// Routed experts as grouped GEMMs over expert-major permuted rows (moe-semantics §7):
//   fc1Out = x·W1_e, fc3Out = x·W3_e                      [N, F]
//   act    = silu(fc1Out) ⊙ fc3Out                        [N, F]   (SwiGLU)
//   y      = (act ⊙ p) · W2_e                             [N, H]   (prob after the activation, Megatron)
// Weights are stacked banks, so a layer's experts are 3 parameters: w1, w3 [E, H, F] and w2 [E, F, H]
// (pre-transposed: the forward needs no transposed matMul). Expert e owns rows
// [offsets[e], offsets[e+1]); `counts` = tokensPerExpert.
import { tf } from '../../backend/tf.ts';
import { groupedMatMul, groupedMatMulTransposed, groupedMatMulTransposedSum, groupedWeightGrad } from '../../backend/grouped.ts';
import { swiglu, swigluBackward } from '../../backend/fused-swiglu.ts';
import type { ParamStore, GradStore } from '../module.ts';
import type { SavedActivations } from '../saved.ts';
import type { InitWeight } from '../init.ts';

export type { InitWeight };

/** silu'(z) = σ(z)·(1 + z·(1 − σ(z))) */
export function siluGrad(z: tf.Tensor): tf.Tensor {
  return tf.tidy(() => { const s = tf.sigmoid(z); return tf.mul(s, tf.add(1, tf.mul(z, tf.sub(1, s)))); });
}

export class GroupedExperts {
  static readonly savedNames = ['permutedTokens', 'permutedProbs', 'fc1Out', 'fc3Out', 'act'] as const;
  readonly w1: tf.Variable; readonly w3: tf.Variable; readonly w2: tf.Variable;

  constructor(readonly prefix: string, numExperts: number, hidden: number, ffn: number, params: ParamStore,
    initWeight: InitWeight, seed: number) {
    const E = numExperts, H = hidden, F = ffn;
    this.w1 = params.add(`${prefix}.w1`, initWeight([E, H, F], 'linear', seed + 1), { decay: true, expert: -1 });
    this.w3 = params.add(`${prefix}.w3`, initWeight([E, H, F], 'linear', seed + 2), { decay: true, expert: -1 });
    this.w2 = params.add(`${prefix}.w2`, initWeight([E, F, H], 'out', seed + 3), { decay: true, expert: -1 });
  }

  /**
   * permutedTokens [N, H], permutedProbs [N, 1] → y [N, H]. Saves fc1Out, fc3Out and act (with
   * recompute recipes) and the two inputs under their names; the caller may attach a restorer to
   * 'permutedTokens' (it is a gather of the layer input).
   */
  forward(permutedTokens: tf.Tensor2D, permutedProbs: tf.Tensor2D, counts: number[], rec: SavedActivations): tf.Tensor2D {
    return tf.tidy(() => {
      const w1 = this.w1 as unknown as tf.Tensor3D, w3 = this.w3 as unknown as tf.Tensor3D, w2 = this.w2 as unknown as tf.Tensor3D;
      if (!rec.has('permutedTokens')) rec.save('permutedTokens', permutedTokens);
      if (!rec.has('permutedProbs')) rec.save('permutedProbs', permutedProbs);
      const fc1Out = rec.save('fc1Out', groupedMatMul(permutedTokens, w1, counts),
        (r) => groupedMatMul(r.get<tf.Tensor2D>('permutedTokens'), w1, counts));                    // [N, F]
      const fc3Out = rec.save('fc3Out', groupedMatMul(permutedTokens, w3, counts),
        (r) => groupedMatMul(r.get<tf.Tensor2D>('permutedTokens'), w3, counts));                    // [N, F]
      // act = silu(fc1Out)·fc3Out and act·p in one fused kernel (after the sigmoid)
      const { act, actP } = swiglu(fc1Out, fc3Out, permutedProbs);
      rec.save('act', act, (r) => swiglu(r.get('fc1Out'), r.get('fc3Out')).act);            // [N, F]
      return groupedMatMul(actP as tf.Tensor2D, w2, counts);                                   // [N, H]
    });
  }

  /** dy [N, H] → dx [N, H] and dProbs [N, 1]; adds dW1, dW3, dW2 to `grads`. */
  backward(dy: tf.Tensor2D, counts: number[], rec: SavedActivations, grads: GradStore): { dx: tf.Tensor2D; dProbs: tf.Tensor2D } {
    const out = tf.tidy(() => {
      const w1 = this.w1 as unknown as tf.Tensor3D, w3 = this.w3 as unknown as tf.Tensor3D, w2 = this.w2 as unknown as tf.Tensor3D;
      // saved entries are read when needed and released right after their last read, so act,
      // fc1Out/fc3Out and permutedTokens are not all live at once (memory/lifecycle.ts BACKWARD_SCRIPT)
      // p is cloned (shared data, no copy): the fused kernel below reads it after its entry is released
      const p = tf.clone(rec.get<tf.Tensor2D>('permutedProbs')), act = rec.get('act');
      grads.add(`${this.prefix}.w2`, groupedWeightGrad(tf.mul(act, p) as tf.Tensor2D, dy, counts)); // [E, F, H]
      const dActScaled = groupedMatMulTransposed(dy, w2, counts);                     // [N, F]
      rec.release('act', 'permutedProbs');
      // one fused kernel (after the sigmoid): dAct = dActScaled·p, dFc3 = dAct·silu(fc1Out),
      // dFc1 = (dAct·fc3Out)·(σ + silu·(1 − σ)), dProbs = Σ_f dActScaled·act (act recomputed in-register)
      const sw = swigluBackward(dActScaled, rec.get('fc1Out'), rec.get('fc3Out'), p);
      const dFc1 = sw.dGate as tf.Tensor2D, dFc3 = sw.dUp as tf.Tensor2D, dProbs = sw.dP as tf.Tensor2D; // [N, F], [N, F], [N, 1]
      rec.release('fc1Out', 'fc3Out');
      const x = rec.get<tf.Tensor2D>('permutedTokens');
      grads.add(`${this.prefix}.w1`, groupedWeightGrad(x, dFc1, counts));
      grads.add(`${this.prefix}.w3`, groupedWeightGrad(x, dFc3, counts));
      rec.release('permutedTokens');
      const dx = groupedMatMulTransposedSum(dFc1, w1, dFc3, w3, counts);              // [N, H]: dFc1·W1ᵀ + dFc3·W3ᵀ in one kernel
      return { dx, dProbs };
    });
    return out;
  }
}
