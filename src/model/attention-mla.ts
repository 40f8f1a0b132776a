// Multi-head latent attention (DeepSeek-V2/V3, Pangu Ultra MoE), causal, input/output [B, S, H].
//   q:  x·wqA [T, rq] → RMSNorm (q_a norm) → ·wqB [T, a·(dn+dr)]   (or x·wq without q-LoRA)
//   kv: x·wkvA [T, rkv+dr] = [latent | kRope]; latent → RMSNorm (kv_a norm) → ·wkvB [T, a·(dn+dv)]
//   per head: q = [qNope | rope(qRope)], k = [kNope | rope(kRope)] (kRope shared by all heads),
//   v from the up-projection; softmax scale 1/sqrt(dn+dr); out = ctx·wo, wo [a·dv, H].
// Saved: mla.x, mla.qANorm.{x,rstd}, mla.qLatent, mla.kvANorm.{x,rstd}, mla.kvLatent,
// mla.kvUp [T, a·(dn+dv)] (the attention core's K/V before head split), mla.kRope [B, S, 1, dr]
// (after RoPE), mla.q [B·a, S, dn+dr] (after RoPE), mla.probs [B·a, S, S], mla.ctx [T, a·dv].
// Every entry but mla.x has a recompute recipe (from mla.x, the weights and other entries).
// The pieces are public for context parallelism (parallel/cp/cp-mla.ts): `project` (everything before
// the core, RoPE at given positions), `keysValues` / `keysValuesBackward` and `projectBackward`.
import { tf } from '../backend/tf.ts';
import type { ModelConfig } from './config.ts';
import type { ForwardContext, GradStore, Module, ParamStore } from './module.ts';
import type { SavedActivations } from './saved.ts';
import { seedOf, type InitWeight } from './init.ts';
import { linear, linearBackward, rows } from './linear.ts';
import { applyRope, applyRopeBackward } from './rope.ts';
import { RMSNorm } from './norm.ts';
import { attentionCoreBackwardKT, attentionCoreForwardKT, attentionProbsKT, fromHeads, toHeads } from './attention-core.ts';

export class MLAttention implements Module {
  readonly savedNames: readonly string[];
  readonly a: number; readonly rq: number | null; readonly rkv: number;
  readonly dn: number; readonly dr: number; readonly dv: number; readonly theta: number; readonly scale: number;
  readonly qANorm: RMSNorm | null; readonly kvANorm: RMSNorm;

  constructor(cfg: ModelConfig, readonly params: ParamStore, readonly prefix: string, init: InitWeight) {
    const m = cfg.mla!, H = cfg.hiddenSize;
    this.a = cfg.numHeads; this.rq = m.qLoraRank; this.rkv = m.kvLoraRank;
    this.dn = m.qkNopeHeadDim; this.dr = m.qkRopeHeadDim; this.dv = m.vHeadDim; this.theta = cfg.ropeTheta;
    this.scale = 1 / Math.sqrt(this.dn + this.dr);
    const add = (n: string, shape: number[], role: 'linear' | 'out') =>
      params.add(`${prefix}.${n}`, init(shape, role, seedOf(`${prefix}.${n}`)), { decay: true });
    const dqk = this.dn + this.dr;
    if (this.rq === null) { add('wq', [H, this.a * dqk], 'linear'); this.qANorm = null; }
    else {
      add('wqA', [H, this.rq], 'linear');
      this.qANorm = new RMSNorm(params, `${prefix}.qANorm`, 'mla.qANorm', this.rq, cfg.normEps);
      add('wqB', [this.rq, this.a * dqk], 'linear');
    }
    add('wkvA', [H, this.rkv + this.dr], 'linear');
    this.kvANorm = new RMSNorm(params, `${prefix}.kvANorm`, 'mla.kvANorm', this.rkv, cfg.normEps);
    add('wkvB', [this.rkv, this.a * (this.dn + this.dv)], 'linear');
    add('wo', [this.a * this.dv, H], 'out');
    this.savedNames = ['mla.x', ...(this.qANorm ? [...this.qANorm.savedNames, 'mla.qLatent'] : []),
      ...this.kvANorm.savedNames, 'mla.kvLatent', 'mla.kvUp', 'mla.kRope', 'mla.q', 'mla.probs', 'mla.ctx'];
  }

  private w(n: string) { return this.params.get(`${this.prefix}.${n}`); }

  /** kT [B·a, dn+dr, S], vT [B·a, dv, S] (keys/values transposed per head) from the saved
   *  up-projection and shared rope key: one transpose, then outer-axis split/concat (fast copies).
   *  Context parallelism (parallel/cp/cp-mla.ts) calls it on the gathered positions. */
  keysValues(kvUp: tf.Tensor, kRope: tf.Tensor, B: number, S: number) {
    const { a, dn, dr, dv } = this, G = B * a;
    // two chunk-friendly transposes ([0,2,1,3] then per-head [0,2,1]) beat one [0,2,3,1] on wasm
    const kvT = tf.transpose(toHeads(tf.reshape(kvUp, [B, S, a, dn + dv])), [0, 2, 1]);  // [G, dn+dv, S]
    const [kNopeT, vT] = tf.split(kvT, [dn, dv], 1);                                   // [G, dn, S], [G, dv, S]
    const kRopeT = tf.transpose(tf.reshape(kRope, [B, S, dr]), [0, 2, 1]);             // [B, dr, S]
    const kRopeH = tf.reshape(tf.mul(tf.reshape(kRopeT, [B, 1, dr, S]), tf.ones([1, a, 1, 1])), [G, dr, S]); // broadcast, not tile
    return { kT: tf.concat([kNopeT, kRopeH], 1) as tf.Tensor3D, vT: vT as tf.Tensor3D };
  }

  /** Backward of keysValues: dkvUp [B·S, a·(dn+dv)] and dkRope [B, S, dr] (summed over the heads that share it). */
  keysValuesBackward(dkT: tf.Tensor3D, dvT: tf.Tensor3D, B: number, S: number): { dkvUp: tf.Tensor2D; dkRope: tf.Tensor3D } {
    const { a, dn, dr, dv } = this;
    const [dkNopeT, dkRopeT] = tf.split(dkT, [dn, dr], 1);                 // [B·a, dn, S], [B·a, dr, S]
    const dkvUpT = tf.reshape(tf.concat([dkNopeT, dvT], 1), [B, a, dn + dv, S]);
    const dkvUp = tf.reshape(tf.transpose(dkvUpT, [0, 3, 1, 2]), [B * S, a * (dn + dv)]) as tf.Tensor2D;
    const dkRope = tf.transpose(tf.sum(tf.reshape(dkRopeT, [B, a, dr, S]), 1), [0, 2, 1]) as tf.Tensor3D; // [B, S, dr]
    return { dkvUp, dkRope };
  }

  /** [T, a·(dn+dr)] → q [B·a, S, dn+dr] with RoPE on the last dr dims of each head. */
  private queries(qFull: tf.Tensor, B: number, S: number, pos?: Int32Array): tf.Tensor3D {
    return toHeads(applyRope(tf.reshape(qFull, [B, S, this.a, this.dn + this.dr]), this.theta, this.dr, pos));
  }

  /**
   * Everything before the attention core, on x [B, S, H] whose row s sits at sequence position
   * `pos[s]` (default s; context parallelism passes the rank's global positions): saves and returns
   * q [B·a, S, dn+dr], kvUp [T, a·(dn+dv)] and kRope [B, S, 1, dr] (after RoPE), owned by `rec`.
   */
  project(x: tf.Tensor, rec: SavedActivations, ctx: ForwardContext, pos?: Int32Array): { q: tf.Tensor3D; kvUp: tf.Tensor2D; kRope: tf.Tensor4D } {
    const [B, S] = x.shape, { dr, rkv } = this;
    rec.save('mla.x', tf.clone(x));
    const x2 = rows(x);                                                        // [T, H]
    const X = (r: SavedActivations) => rows(r.get('mla.x'));
    let qFull: tf.Tensor;                                                     // [T, a·(dn+dr)]
    if (this.qANorm) {
      const qLatent = this.qANorm.forward(linear(x2, this.w('wqA')), rec, ctx); // [T, rq]
      rec.setRestorer('mla.qANorm.x', (r) => linear(X(r), this.w('wqA')));
      rec.save('mla.qLatent', qLatent, (r) => this.qANorm!.output(r));
      qFull = linear(qLatent, this.w('wqB'));
    } else qFull = linear(x2, this.w('wq'));
    const q = rec.save('mla.q', this.queries(qFull, B, S, pos), (r) =>        // [B·a, S, dn+dr]
      this.queries(this.qANorm ? linear(r.get('mla.qLatent'), this.w('wqB')) : linear(X(r), this.w('wq')), B, S, pos));
    const kvA = (x2: tf.Tensor) => tf.split(linear(x2, this.w('wkvA')), [rkv, dr], -1); // [T, rkv], [T, dr]
    const ropeKey = (raw: tf.Tensor) => applyRope(tf.reshape(raw, [B, S, 1, dr]), this.theta, undefined, pos);
    const [latent, kRopeRaw] = kvA(x2);
    const kvLatent = this.kvANorm.forward(latent, rec, ctx);
    rec.setRestorer('mla.kvANorm.x', (r) => kvA(X(r))[0]);
    rec.save('mla.kvLatent', kvLatent, (r) => this.kvANorm.output(r));
    const kvUp = rec.save('mla.kvUp', linear(kvLatent, this.w('wkvB')), (r) => linear(r.get('mla.kvLatent'), this.w('wkvB'))); // [T, a·(dn+dv)]
    const kRope = rec.save('mla.kRope', ropeKey(kRopeRaw), (r) => ropeKey(kvA(X(r))[1]));
    return { q, kvUp: kvUp as tf.Tensor2D, kRope: kRope as tf.Tensor4D };
  }

  forward(x: tf.Tensor, rec: SavedActivations, ctx: ForwardContext): tf.Tensor {
    const [B, S, H] = x.shape, { a, dv } = this, T = B * S;
    const { q, kvUp, kRope } = this.project(x, rec, ctx);
    const { kT, vT } = this.keysValues(kvUp, kRope, B, S);
    const c = attentionCoreForwardKT(q, kT, vT, this.scale, rec, 'mla', (r) =>    // [B·a, S, dv]
      attentionProbsKT(r.get('mla.q'), this.keysValues(r.get('mla.kvUp'), r.get('mla.kRope'), B, S).kT, this.scale));
    const ctxOf = (probs: tf.Tensor3D, vT: tf.Tensor3D) => tf.reshape(fromHeads(tf.matMul(probs, vT, false, true), B), [T, a * dv]);
    const ctx2 = rec.save('mla.ctx', tf.reshape(fromHeads(c, B), [T, a * dv]), (r) =>
      ctxOf(r.get('mla.probs'), this.keysValues(r.get('mla.kvUp'), r.get('mla.kRope'), B, S).vT));
    return tf.reshape(linear(ctx2, this.w('wo')), [B, S, H]);
  }

  backward(dy: tf.Tensor, rec: SavedActivations, grads: GradStore, ctx: ForwardContext): tf.Tensor {
    const [B, S, H] = dy.shape, { a, dv } = this, p = this.prefix;
    // saved entries are read when needed and released after their last read (mla.x last: the
    // recipes of kRope and the down-projection inputs read it)
    const dctx2 = linearBackward(rows(dy), rec.get('mla.ctx'), this.w('wo'), grads, `${p}.wo`);
    rec.release('mla.ctx');
    const q = rec.get<tf.Tensor3D>('mla.q');
    const { kT, vT } = this.keysValues(rec.get('mla.kvUp'), rec.get('mla.kRope'), B, S);
    const g = attentionCoreBackwardKT(toHeads(tf.reshape(dctx2, [B, S, a, dv])), q, kT, vT, rec.get('mla.probs'), this.scale);
    rec.release('mla.probs', 'mla.q', 'mla.kvUp', 'mla.kRope');
    // keys and values (transposed per head) → up-projection and shared rope key
    const { dkvUp, dkRope } = this.keysValuesBackward(g.dkT, g.dvT, B, S);
    return tf.reshape(this.projectBackward(g.dq, dkvUp, dkRope, rec, grads, ctx), [B, S, H]);
  }

  /**
   * Backward of `project` from dq [B·a, S, dn+dr], dkvUp [T, a·(dn+dv)] and dkRope [B, S, dr] (the
   * same positions `pos`): adds the projection and latent-norm gradients, releases the records'
   * remaining entries and returns dx [T, H].
   */
  projectBackward(dq: tf.Tensor3D, dkvUp: tf.Tensor2D, dkRope: tf.Tensor, rec: SavedActivations, grads: GradStore, ctx: ForwardContext, pos?: Int32Array): tf.Tensor2D {
    const { a, dn, dr } = this, p = this.prefix, S = dq.shape[1], B = dq.shape[0] / a, T = B * S;
    const dkRopeRaw = tf.reshape(applyRopeBackward(tf.reshape(dkRope, [B, S, 1, dr]), this.theta, undefined, pos), [T, dr]);
    const dLatentN = linearBackward(dkvUp, rec.get('mla.kvLatent'), this.w('wkvB'), grads, `${p}.wkvB`);
    rec.release('mla.kvLatent');
    const dLatent = this.kvANorm.backward(dLatentN, rec, grads, ctx);
    rec.release(...this.kvANorm.savedNames);
    const x2 = rows(rec.get('mla.x'));
    let dx = linearBackward(tf.concat([dLatent, dkRopeRaw], -1), x2, this.w('wkvA'), grads, `${p}.wkvA`);
    // queries
    const dqFull = tf.reshape(applyRopeBackward(fromHeads(dq, B), this.theta, dr, pos), [T, a * (dn + dr)]);
    if (this.qANorm) {
      const dqLatent = linearBackward(dqFull, rec.get('mla.qLatent'), this.w('wqB'), grads, `${p}.wqB`);
      rec.release('mla.qLatent');
      const dqA = this.qANorm.backward(dqLatent, rec, grads, ctx);
      rec.release(...this.qANorm.savedNames);
      dx = tf.add(dx, linearBackward(dqA, x2, this.w('wqA'), grads, `${p}.wqA`));
    } else dx = tf.add(dx, linearBackward(dqFull, x2, this.w('wq'), grads, `${p}.wq`));
    rec.release('mla.x');
    return dx as tf.Tensor2D;
  }
}
