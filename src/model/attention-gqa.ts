// Causal grouped-query attention (MHA when numKvHeads == numHeads) with RoPE on q and k.
// Input/output [B, S, H]. Weights [in, out]: wq [H, a·d], wk/wv [H, g·d], wo [a·d, H].
// Query head i uses kv head floor(i / (a/g)).
// Saved: attn.x (input = pre-norm output), attn.q [B·a, S, d] (after RoPE), attn.k, attn.v
// [B·g, S, d] (k after RoPE, not expanded to a heads), attn.probs [B·a, S, S], attn.ctx [T, a·d].
// Every entry but attn.x has a recompute recipe.
import { tf } from '../backend/tf.ts';
import type { ModelConfig } from './config.ts';
import type { ForwardContext, GradStore, Module, ParamStore } from './module.ts';
import type { SavedActivations } from './saved.ts';
import { seedOf, type InitWeight } from './init.ts';
import { linear, linearBackward, rows } from './linear.ts';
import { applyRope, applyRopeBackward } from './rope.ts';
import { attentionCoreBackward, attentionCoreForward, attentionProbs, fromHeads, toHeads } from './attention-core.ts';

export class GQAttention implements Module {
  readonly savedNames = ['attn.x', 'attn.q', 'attn.k', 'attn.v', 'attn.probs', 'attn.ctx'] as const;
  readonly a: number; readonly g: number; readonly d: number; readonly theta: number; readonly scale: number;

  constructor(cfg: ModelConfig, readonly params: ParamStore, readonly prefix: string, init: InitWeight) {
    this.a = cfg.numHeads; this.g = cfg.numKvHeads; this.d = cfg.headDim; this.theta = cfg.ropeTheta;
    this.scale = 1 / Math.sqrt(this.d);
    const H = cfg.hiddenSize, q = this.a * this.d, kv = this.g * this.d;
    const add = (n: string, shape: number[], role: 'linear' | 'out') =>
      params.add(`${prefix}.${n}`, init(shape, role, seedOf(`${prefix}.${n}`)), { decay: true });
    add('wq', [H, q], 'linear'); add('wk', [H, kv], 'linear'); add('wv', [H, kv], 'linear'); add('wo', [q, H], 'out');
  }

  private w(n: string) { return this.params.get(`${this.prefix}.${n}`); }

  /** kv heads [B·g, S, d] → [B·a, S, d] by repeating each kv head a/g times. */
  private expand(x: tf.Tensor3D, B: number): tf.Tensor3D {
    const r = this.a / this.g;
    if (r === 1) return x;
    const [, S, d] = x.shape;
    return tf.reshape(tf.tile(tf.reshape(x, [B, this.g, 1, S * d]), [1, 1, r, 1]), [B * this.a, S, d]); // rank 4: tile grad
  }

  private reduce(dx: tf.Tensor3D, B: number): tf.Tensor3D {
    const r = this.a / this.g;
    if (r === 1) return dx;
    const [, S, d] = dx.shape;
    return tf.reshape(tf.sum(tf.reshape(dx, [B, this.g, r, S, d]), 2), [B * this.g, S, d]);
  }

  forward(x: tf.Tensor, rec: SavedActivations, _ctx?: ForwardContext): tf.Tensor {
    const [B, S, H] = x.shape, { a, g, d } = this;
    rec.save('attn.x', tf.clone(x));
    const X = (r: SavedActivations) => rows(r.get('attn.x'));                 // [T, H]
    const proj = (x2: tf.Tensor, w: string, n: number, rope: boolean) => {    // → [B·n, S, d]
      const t = tf.reshape(linear(x2, this.w(w)), [B, S, n, d]);
      return toHeads(rope ? applyRope(t, this.theta) : t);
    };
    const x2 = rows(x);
    const q = rec.save('attn.q', proj(x2, 'wq', a, true), (r) => proj(X(r), 'wq', a, true)); // [B·a, S, d]
    const k = rec.save('attn.k', proj(x2, 'wk', g, true), (r) => proj(X(r), 'wk', g, true)); // [B·g, S, d]
    const v = rec.save('attn.v', proj(x2, 'wv', g, false), (r) => proj(X(r), 'wv', g, false));
    const ctx = attentionCoreForward(q, this.expand(k, B), this.expand(v, B), this.scale, rec, 'attn',
      (r) => attentionProbs(r.get('attn.q'), this.expand(r.get('attn.k'), B), this.scale)); // [B·a, S, d]
    const ctxOf = (c: tf.Tensor) => tf.reshape(fromHeads(c, B), [B * S, a * d]);              // [T, a·d]
    const ctx2 = rec.save('attn.ctx', ctxOf(ctx), (r) => ctxOf(tf.matMul(r.get<tf.Tensor3D>('attn.probs'), this.expand(r.get('attn.v'), B))));
    return tf.reshape(linear(ctx2, this.w('wo')), [B, S, H]);
  }

  backward(dy: tf.Tensor, rec: SavedActivations, grads: GradStore, _ctx?: ForwardContext): tf.Tensor {
    const [B, S, H] = dy.shape, { a, g, d } = this;
    // saved entries are read when needed and released after their last read
    const dctx2 = linearBackward(rows(dy), rec.get('attn.ctx'), this.w('wo'), grads, `${this.prefix}.wo`); // [T, a·d]
    rec.release('attn.ctx');
    const q = rec.get<tf.Tensor3D>('attn.q'), k = rec.get<tf.Tensor3D>('attn.k'), v = rec.get<tf.Tensor3D>('attn.v');
    const dctx = toHeads(tf.reshape(dctx2, [B, S, a, d]));
    const { dq, dk, dv } = attentionCoreBackward(dctx, q, this.expand(k, B), this.expand(v, B), rec.get('attn.probs'), this.scale);
    rec.release('attn.probs', 'attn.q', 'attn.k', 'attn.v');
    const x2 = rows(rec.get('attn.x'));
    const dq2 = tf.reshape(applyRopeBackward(fromHeads(dq, B), this.theta), [B * S, a * d]);
    const dk2 = tf.reshape(applyRopeBackward(fromHeads(this.reduce(dk, B), B), this.theta), [B * S, g * d]);
    const dv2 = tf.reshape(fromHeads(this.reduce(dv, B), B), [B * S, g * d]);
    let dx = linearBackward(dq2, x2, this.w('wq'), grads, `${this.prefix}.wq`);
    dx = tf.add(dx, linearBackward(dk2, x2, this.w('wk'), grads, `${this.prefix}.wk`));
    dx = tf.add(dx, linearBackward(dv2, x2, this.w('wv'), grads, `${this.prefix}.wv`));
    rec.release('attn.x');
    return tf.reshape(dx, [B, S, H]);
  }
}
