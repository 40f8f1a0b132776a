// Transformer block on the residual stream h [B, S, H]:
//   pre-norm:  h ← h + Attn(Norm(h));            h ← h + FFN(Norm(h))
//   sandwich (DSSN): h ← h + Norm_post(Attn(Norm_pre(h)));  h ← h + Norm_post(FFN(Norm_pre(h)))
// FFN = dense SwiGLU ([T, H]) for the first numDenseLayers layers, the MoE layer ([B, S, H]) after.
// Everything the block saves goes to one SavedActivations per layer; sub-module names:
//   attnNorm.*, attn.* | mla.*, attnPostNorm.*, mlpNorm.*, mlp.* | moe.*, mlpPostNorm.*
import { tf } from '../backend/tf.ts';
import { isMoELayer, type ModelConfig } from './config.ts';
import type { ForwardContext, GradStore, Module, ParamStore } from './module.ts';
import type { SavedActivations } from './saved.ts';
import type { InitWeight } from './init.ts';
import { normGain } from './init.ts';
import { RMSNorm } from './norm.ts';
import { GQAttention } from './attention-gqa.ts';
import { MLAttention } from './attention-mla.ts';
import { SwiGLUMLP } from './mlp.ts';


/** What the block needs from a MoE layer (src/model/moe's MoELayer). */
export interface MoELike extends Module {
  updateExpertBias(): void;
  resetGlobalAux(): void;
}
export type MoEFactory = (cfg: ModelConfig, layer: number, params: ParamStore, prefix: string, initWeight: InitWeight) => MoELike;

export class TransformerBlock implements Module {
  readonly attnNorm: RMSNorm; readonly attnPostNorm: RMSNorm | null;
  readonly mlpNorm: RMSNorm; readonly mlpPostNorm: RMSNorm | null;
  readonly attn: Module; readonly ffn: Module; readonly moe: MoELike | null;
  readonly savedNames: readonly string[];

  constructor(cfg: ModelConfig, readonly layer: number, params: ParamStore, prefix: string, init: InitWeight, makeMoE: MoEFactory | null, moeLayer = isMoELayer(cfg, layer)) {
    const H = cfg.hiddenSize, eps = cfg.normEps, sandwich = cfg.norm === 'sandwich';
    this.attnNorm = new RMSNorm(params, `${prefix}.attnNorm`, 'attnNorm', H, eps, normGain(cfg, 'pre'));
    this.attn = cfg.attention === 'mla' ? new MLAttention(cfg, params, `${prefix}.attn`, init) : new GQAttention(cfg, params, `${prefix}.attn`, init);
    this.attnPostNorm = sandwich ? new RMSNorm(params, `${prefix}.attnPostNorm`, 'attnPostNorm', H, eps, normGain(cfg, 'postAttn')) : null;
    this.mlpNorm = new RMSNorm(params, `${prefix}.mlpNorm`, 'mlpNorm', H, eps, normGain(cfg, 'pre'));
    if (moeLayer) {
      if (!makeMoE) throw new Error(`layer ${layer} is a MoE layer but no MoE factory was given`);
      this.moe = makeMoE(cfg, layer, params, `${prefix}.moe`, init);
      this.ffn = this.moe;
    } else {
      this.moe = null;
      this.ffn = new SwiGLUMLP(params, `${prefix}.mlp`, H, cfg.denseIntermediateSize, init);
    }
    this.mlpPostNorm = sandwich ? new RMSNorm(params, `${prefix}.mlpPostNorm`, 'mlpPostNorm', H, eps, normGain(cfg, 'postMlp')) : null;
    this.savedNames = [this.attnNorm, this.attn, this.attnPostNorm, this.mlpNorm, this.ffn, this.mlpPostNorm]
      .flatMap((m) => (m ? [...m.savedNames] : []));
  }

  /** h [B, S, H] → [B, S, H]. */
  forward(h: tf.Tensor, rec: SavedActivations, ctx: ForwardContext): tf.Tensor {
    const [B, S, H] = h.shape;
    let a = this.attn.forward(this.attnNorm.forward(h, rec, ctx), rec, ctx);
    // the sub-modules saved the pre-norm outputs as their inputs: give those entries recipes
    rec.setRestorer(this.attn instanceof MLAttention ? 'mla.x' : 'attn.x', (r) => this.attnNorm.output(r));
    if (this.attnPostNorm) a = this.attnPostNorm.forward(a, rec, ctx);
    const h1 = tf.add(h, a);
    // The MoE layer gets [B, S, H] (its per-sequence aux loss needs S) and flattens it batch-major.
    const n = this.mlpNorm.forward(h1, rec, ctx);
    const m0 = this.moe ? this.moe.forward(n, rec, ctx) : this.ffn.forward(tf.reshape(n, [B * S, H]), rec, ctx);
    if (!this.moe) rec.setRestorer('mlp.x', (r) => tf.reshape(this.mlpNorm.output(r), [B * S, H]));
    else if (rec.has('x')) rec.setRestorer('x', (r) => tf.reshape(this.mlpNorm.output(r), [B * S, H])); // MoELayer's input entry
    let m = tf.reshape(m0, [B, S, H]);
    if (this.mlpPostNorm) m = this.mlpPostNorm.forward(m, rec, ctx);
    return tf.add(h1, m);
  }

  /** dh_out [B, S, H] → dh_in [B, S, H]. */
  backward(dy: tf.Tensor, rec: SavedActivations, grads: GradStore, ctx: ForwardContext): tf.Tensor {
    const [B, S, H] = dy.shape;
    // each norm's saved entries are released once its backward has read them (the sub-modules
    // release their own; memory/lifecycle.ts BACKWARD_SCRIPT mirrors this order)
    // (res: the skip connection's gradient, added inside the norm's backward kernel)
    const norm = (n: RMSNorm, d: tf.Tensor, res?: tf.Tensor) => { const dx = n.backwardAdd(d, rec, grads, res); rec.release(...n.savedNames); return dx; };
    let dm = this.mlpPostNorm ? norm(this.mlpPostNorm, dy) : dy;
    dm = tf.reshape(this.moe ? this.moe.backward(dm, rec, grads, ctx) : this.ffn.backward(tf.reshape(dm, [B * S, H]), rec, grads, ctx), [B, S, H]);
    const dh1 = norm(this.mlpNorm, dm, dy);
    let da = this.attnPostNorm ? norm(this.attnPostNorm, dh1) : dh1;
    da = this.attn.backward(da, rec, grads, ctx);
    return norm(this.attnNorm, da, dh1);
  }
}
