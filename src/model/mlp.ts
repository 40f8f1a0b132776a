// SwiGLU MLP (Megatron fused fc1): [gate | up] = x·fc1, act = silu(gate)·up, y = act·fc2.
// fc1 [H, 2F], fc2 [F, H]. Input/output [T, H] (any leading axes are flattened to T).
// Saved: mlp.x (input = pre-norm output), mlp.fc1 [T, 2F] (gate|up), mlp.act [T, F] (fc2 input);
// fc1 and act have recompute recipes.
import { tf } from '../backend/tf.ts';
import { swigluPacked, swigluPackedBackward } from '../backend/fused-swiglu.ts';
import type { ForwardContext, GradStore, Module, ParamStore } from './module.ts';
import type { SavedActivations } from './saved.ts';
import { seedOf, type InitWeight } from './init.ts';
import { linear, linearBackward, rows } from './linear.ts';

/** silu(gate)·up of [gate | up] (one fused kernel after the sigmoid: src/backend/fused-swiglu.ts). */
export function swiglu(h: tf.Tensor): tf.Tensor {
  return swigluPacked(h);
}

export class SwiGLUMLP implements Module {
  readonly savedNames: readonly string[];

  constructor(readonly params: ParamStore, readonly prefix: string, hidden: number, readonly ffn: number, init: InitWeight, readonly tag = 'mlp') {
    params.add(`${prefix}.fc1`, init([hidden, 2 * ffn], 'linear', seedOf(`${prefix}.fc1`)), { decay: true });
    params.add(`${prefix}.fc2`, init([ffn, hidden], 'out', seedOf(`${prefix}.fc2`)), { decay: true });
    this.savedNames = [`${tag}.x`, `${tag}.fc1`, `${tag}.act`];
  }

  forward(x: tf.Tensor, rec: SavedActivations, _ctx?: ForwardContext): tf.Tensor {
    rec.save(`${this.tag}.x`, tf.clone(rows(x))); // a clone: the record owns its entries
    const fc1 = (r: SavedActivations) => linear(r.get(`${this.tag}.x`), this.params.get(`${this.prefix}.fc1`));
    const h = rec.save(`${this.tag}.fc1`, fc1(rec), fc1);                                 // [T, 2F]
    const act = rec.save(`${this.tag}.act`, swiglu(h), (r) => swiglu(r.get(`${this.tag}.fc1`))); // [T, F]
    return tf.reshape(linear(act, this.params.get(`${this.prefix}.fc2`)), x.shape);
  }

  backward(dy: tf.Tensor, rec: SavedActivations, grads: GradStore, _ctx?: ForwardContext): tf.Tensor {
    const p = this.prefix;
    const dact = linearBackward(rows(dy), rec.get(`${this.tag}.act`), this.params.get(`${p}.fc2`), grads, `${p}.fc2`);
    rec.release(`${this.tag}.act`); // saved entries go after their last read
    // dh = [dgate | dup] = [(dact·up)·silu'(gate) | dact·silu(gate)], silu' = σ + silu·(1 − σ): one fused kernel
    const dh = swigluPackedBackward(dact, rec.get(`${this.tag}.fc1`));                // [T, 2F]
    rec.release(`${this.tag}.fc1`);
    const dx = linearBackward(dh, rec.get(`${this.tag}.x`), this.params.get(`${p}.fc1`), grads, `${p}.fc1`);
    rec.release(`${this.tag}.x`);
    return tf.reshape(dx, dy.shape);
  }
}
