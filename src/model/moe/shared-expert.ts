// The shared expert: a dense SwiGLU MLP every token goes through, outside the dispatcher
// (moe-semantics §7), with an optional scalar sigmoid gate per token:
//   act = silu(x·W1) ⊙ (x·W3)   [T, Fs];   s = act·W2   [T, H];   y = σ(x·wGate) ⊙ s  (gate [T, 1])
// Weights are stored [in, out] so the forward has no transposed matMul; Fs = numShared·expertHiddenSize.
import { tf } from '../../backend/tf.ts';
import { swiglu, swigluBackward } from '../../backend/fused-swiglu.ts';
import type { ParamStore, GradStore } from '../module.ts';
import type { SavedActivations } from '../saved.ts';
import type { InitWeight } from './experts.ts';

export class SharedExpert {
  static readonly savedNames = ['sharedFc1Out', 'sharedFc3Out', 'sharedAct', 'sharedGate'] as const;
  readonly w1: tf.Variable; readonly w3: tf.Variable; readonly w2: tf.Variable; readonly gate: tf.Variable | null;

  constructor(readonly prefix: string, hidden: number, ffn: number, useGate: boolean, params: ParamStore, initWeight: InitWeight, seed: number) {
    this.w1 = params.add(`${prefix}.w1`, initWeight([hidden, ffn], 'linear', seed + 1), { decay: true });
    this.w3 = params.add(`${prefix}.w3`, initWeight([hidden, ffn], 'linear', seed + 2), { decay: true });
    this.w2 = params.add(`${prefix}.w2`, initWeight([ffn, hidden], 'out', seed + 3), { decay: true });
    this.gate = useGate ? params.add(`${prefix}.gate`, initWeight([hidden, 1], 'router', seed + 4), { decay: true }) : null;
  }

  /** x [T, H] → y [T, H]. The input is read by name ('x') in backward: the caller saves it. */
  forward(x: tf.Tensor2D, rec: SavedActivations): tf.Tensor2D {
    return tf.tidy(() => {
      const fc1 = rec.save('sharedFc1Out', tf.matMul(x, this.w1), (r) => tf.matMul(r.get('x'), this.w1));   // [T, Fs]
      const fc3 = rec.save('sharedFc3Out', tf.matMul(x, this.w3), (r) => tf.matMul(r.get('x'), this.w3));   // [T, Fs]
      const act = rec.save('sharedAct', swiglu(fc1, fc3).act, (r) => swiglu(r.get('sharedFc1Out'), r.get('sharedFc3Out')).act); // [T, Fs]
      const s = tf.matMul(act, this.w2) as tf.Tensor2D;                                                    // [T, H]
      if (!this.gate) return s;
      const g = rec.save('sharedGate', tf.sigmoid(tf.matMul(x, this.gate)), (r) => tf.sigmoid(tf.matMul(r.get('x'), this.gate!))); // [T, 1]
      return tf.mul(s, g) as tf.Tensor2D;
    });
  }

  /** dy [T, H] → dx [T, H]; adds the weight gradients. */
  backward(dy: tf.Tensor2D, rec: SavedActivations, grads: GradStore): tf.Tensor2D {
    return tf.tidy(() => {
      // 'x' is the MoE layer's input (the router also reads it): the layer releases it, not this module
      const x = rec.get('x'), act = rec.get('sharedAct');
      let dS: tf.Tensor = dy;
      let dx: tf.Tensor | null = null;
      if (this.gate) {
        const g = rec.get('sharedGate');                                       // [T, 1]
        const s = tf.matMul(act, this.w2);                                     // recomputed, not saved: [T, H]
        const dz = tf.mul(tf.sum(tf.mul(dy, s), 1, true), tf.mul(g, tf.sub(1, g))); // [T, 1]
        grads.add(`${this.prefix}.gate`, tf.matMul(x, dz, true, false));        // [H, 1]
        dx = tf.matMul(dz, this.gate, false, true);                            // [T, H]
        dS = tf.mul(dy, g);
        rec.release('sharedGate');
      }
      grads.add(`${this.prefix}.w2`, tf.matMul(act, dS, true, false));        // [Fs, H]
      const dAct = tf.matMul(dS, this.w2, false, true);                        // [T, Fs]
      rec.release('sharedAct');
      const fc1 = rec.get('sharedFc1Out'), fc3 = rec.get('sharedFc3Out');
      // dFc3 = dAct·silu(fc1), dFc1 = (dAct·fc3)·(σ + silu·(1 − σ)): one fused kernel after the sigmoid
      const { dGate: dFc1, dUp: dFc3 } = swigluBackward(dAct, fc1, fc3);
      rec.release('sharedFc1Out', 'sharedFc3Out');
      grads.add(`${this.prefix}.w1`, tf.matMul(x, dFc1, true, false));
      grads.add(`${this.prefix}.w3`, tf.matMul(x, dFc3, true, false));
      const dxMlp = tf.add(tf.matMul(dFc1, this.w1, false, true), tf.matMul(dFc3, this.w3, false, true));
      return (dx ? tf.add(dx, dxMlp) : dxMlp) as tf.Tensor2D;
    });
  }
}
