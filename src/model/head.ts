// Output layer: final RMSNorm + LM head (untied weight [H, V], or the embedding [V, H] used
// transposed when cfg.tieEmbeddings) + cross-entropy. Used by the main model and each MTP depth
// (which share the head weight but have their own final norm).
// Saved (tag = 'head' or 'mtp'): <tag>.finalNorm.{x,rstd}, <tag>.x (normed hidden [T, H]),
// <tag>.ce.probs [T, V].
import { tf } from '../backend/tf.ts';
import type { ModelConfig } from './config.ts';
import type { GradStore, ParamStore } from './module.ts';
import type { SavedActivations } from './saved.ts';
import { RMSNorm } from './norm.ts';
import { CrossEntropy } from './cross-entropy.ts';
import { linear, linearBackward, rows } from './linear.ts';

export class OutputHead {
  readonly norm: RMSNorm;
  readonly ce: CrossEntropy;
  readonly savedNames: readonly string[];

  constructor(cfg: ModelConfig, readonly params: ParamStore, normPrefix: string, readonly headWeight: string, readonly tied: boolean, readonly tag: string) {
    this.norm = new RMSNorm(params, normPrefix, `${tag}.finalNorm`, cfg.hiddenSize, cfg.normEps);
    this.ce = new CrossEntropy(`${tag}.ce`);
    this.savedNames = [...this.norm.savedNames, `${tag}.x`, ...this.ce.savedNames];
  }

  /** h [B, S, H] → logits [T, V]. */
  logits(h: tf.Tensor, rec: SavedActivations): tf.Tensor2D {
    const x = rec.save(`${this.tag}.x`, rows(this.norm.forward(h, rec)));
    const w = this.params.get(this.headWeight);
    return this.tied ? tf.matMul(x, w as tf.Tensor2D, false, true) : linear(x, w);
  }

  /** Scalar mean cross-entropy of h against targets (−1 ignored). */
  loss(h: tf.Tensor, targets: Int32Array, rec: SavedActivations): tf.Scalar {
    return this.ce.forward(this.logits(h, rec), targets, rec);
  }

  /** dh [B, S, H] for the loss scaled by `dloss`. */
  backward(dloss: number, rec: SavedActivations, grads: GradStore, shape: number[]): tf.Tensor {
    const dlogits = this.ce.backward(dloss, rec);                   // [T, V]
    const x = rec.get(`${this.tag}.x`), w = this.params.get(this.headWeight);
    let dx: tf.Tensor;
    if (this.tied) {
      grads.add(this.headWeight, tf.matMul(dlogits as tf.Tensor2D, x as tf.Tensor2D, true, false)); // [V, H]
      dx = tf.matMul(dlogits as tf.Tensor2D, w as tf.Tensor2D);
    } else dx = linearBackward(dlogits, x, w, grads, this.headWeight);
    return this.norm.backward(tf.reshape(dx, shape), rec, grads);
  }
}

