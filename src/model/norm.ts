// RMSNorm: y = x · rstd · g, rstd = 1/sqrt(mean(x²) + eps), over the last axis (any rank).
// Saved: `<tag>.x` (the input) and `<tag>.rstd` [..., 1]. The output is saved by its consumer
// (e.g. 'attn.x'), so it is a separate entry that recompute/swap policies can drop on its own;
// `output(rec)` is the recompute recipe the consumer's owner registers for it. rstd has a recipe.
import { tf } from '../backend/tf.ts';
import { rmsNorm, rmsNormBackward } from '../backend/fused-norm.ts';
import type { ForwardContext, GradStore, Module, ParamStore } from './module.ts';
import type { SavedActivations } from './saved.ts';

export class RMSNorm implements Module {
  readonly savedNames: readonly string[];
  readonly weightName: string;

  /** Adds `<prefix>.weight` [dim] initialised to `gain`; saves under `<tag>.*`. */
  constructor(readonly params: ParamStore, prefix: string, readonly tag: string, dim: number, readonly eps: number, gain = 1) {
    this.weightName = `${prefix}.weight`;
    params.add(this.weightName, tf.fill([dim], gain), { decay: false });
    this.savedNames = [`${tag}.x`, `${tag}.rstd`];
  }

  forward(x: tf.Tensor, rec: SavedActivations, _ctx?: ForwardContext): tf.Tensor {
    const { y, rstd } = rmsNorm(x, this.params.get(this.weightName), this.eps); // one fused kernel; rstd [..., 1]
    rec.save(`${this.tag}.x`, tf.clone(x)); // a clone: the record owns its entries
    rec.save(`${this.tag}.rstd`, rstd, (r) => this.rstd(r.get(`${this.tag}.x`)));
    return y;
  }

  private rstd(x: tf.Tensor): tf.Tensor {
    const { y, rstd } = rmsNorm(x, this.params.get(this.weightName), this.eps);
    y.dispose();
    return rstd;
  }

  /** The forward output recomputed from the saved entries (a restorer for its consumer's input). */
  output(rec: SavedActivations): tf.Tensor {
    return tf.mul(tf.mul(rec.get(`${this.tag}.x`), rec.get(`${this.tag}.rstd`)), this.params.get(this.weightName));
  }

  backward(dy: tf.Tensor, rec: SavedActivations, grads: GradStore, _ctx?: ForwardContext): tf.Tensor {
    return this.backwardAdd(dy, rec, grads);
  }

  /**
   * dx + residual (residual: the skip connection's gradient, same shape; added in the same kernel).
   * dx = rstd·(dxhat − xhat·mean(dxhat·xhat)), xhat = x·rstd, dxhat = dy·g; grads[weight] += Σ dy·xhat.
   */
  backwardAdd(dy: tf.Tensor, rec: SavedActivations, grads: GradStore, residual?: tf.Tensor): tf.Tensor {
    const x = rec.get(`${this.tag}.x`), rstd = rec.get(`${this.tag}.rstd`);
    const { dx, dg } = rmsNormBackward(dy, x, rstd, this.params.get(this.weightName), residual);
    grads.add(this.weightName, dg);
    return dx;
  }
}
