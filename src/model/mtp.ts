// Multi-token prediction module (DeepSeek-V3 §2.2), depth k = 1..D, sharing embedding and head:
//   h'_k = [RMSNorm(h_{k−1}) | RMSNorm(Emb(ids_k))] · proj,  proj [2H, H]
//   h_k  = TransformerBlock_k(h'_k)   (a layer of the last main layer's type)
//   loss_k = CE(Head(RMSNorm_k(h_k)), targets_k)
// with ids_k[b, s] = tokens[b, s+k] and targets_k[b, s] = tokens[b, s+k+1] (rolled left by k,
// Megatron's roll_tensor; positions that run off the sequence get id 0 and target −1).
// h_0 is the main model's last hidden state (before the final norm).
// One SavedActivations per depth: mtp.hNorm.*, mtp.embNorm.*, embedding.ids, mtp.proj.x,
// the block's names, mtp.finalNorm.*, mtp.x, mtp.ce.probs.
import { tf } from '../backend/tf.ts';
import type { ModelConfig } from './config.ts';
import { isMoELayer } from './config.ts';
import type { ForwardContext, GradStore, ParamStore } from './module.ts';
import type { SavedActivations } from './saved.ts';
import { seedOf, type InitWeight } from './init.ts';
import { RMSNorm } from './norm.ts';
import { Embedding } from './embedding.ts';
import { linear, linearBackward } from './linear.ts';
import { TransformerBlock, type MoEFactory } from './block.ts';
import { OutputHead } from './head.ts';

/** ids and targets of MTP depth k from the main tokens/targets (targets[b,s] = tokens[b,s+1]). */
export function mtpShift(targets: Int32Array, batch: number, seqLen: number, k: number): { ids: Int32Array; targets: Int32Array } {
  const ids = new Int32Array(batch * seqLen), tg = new Int32Array(batch * seqLen).fill(-1);
  for (let b = 0; b < batch; b++) for (let s = 0; s < seqLen; s++) {
    const j = s + k - 1; // tokens[b, s+k] = targets[b, s+k−1]
    if (j < seqLen) ids[b * seqLen + s] = Math.max(targets[b * seqLen + j], 0);
    if (j + 1 < seqLen) tg[b * seqLen + s] = targets[b * seqLen + j + 1];
  }
  return { ids, targets: tg };
}

export class MTPModule {
  readonly hNorm: RMSNorm; readonly embNorm: RMSNorm; readonly block: TransformerBlock; readonly head: OutputHead;
  readonly projName: string;

  constructor(cfg: ModelConfig, readonly depth: number, readonly params: ParamStore, prefix: string, init: InitWeight,
    makeMoE: MoEFactory | null, readonly embedding: Embedding, headWeight: string) {
    const H = cfg.hiddenSize;
    this.hNorm = new RMSNorm(params, `${prefix}.hNorm`, 'mtp.hNorm', H, cfg.normEps);
    this.embNorm = new RMSNorm(params, `${prefix}.embNorm`, 'mtp.embNorm', H, cfg.normEps);
    this.projName = `${prefix}.proj`;
    params.add(this.projName, init([2 * H, H], 'linear', seedOf(this.projName)), { decay: true });
    this.block = new TransformerBlock(cfg, cfg.numLayers + depth - 1, params, `${prefix}.layer`, init, makeMoE, isMoELayer(cfg, cfg.numLayers - 1));
    this.head = new OutputHead(cfg, params, `${prefix}.finalNorm`, headWeight, cfg.tieEmbeddings, 'mtp');
  }

  /** h_{k−1} [B, S, H] (not owned) → h_k [B, S, H]; the loss is returned separately. */
  forward(hPrev: tf.Tensor, ids: Int32Array, targets: Int32Array, rec: SavedActivations, ctx: ForwardContext): { h: tf.Tensor; loss: tf.Scalar } {
    return tf.tidy(() => {
      const [B, S, H] = hPrev.shape;
      const e = tf.reshape(this.embedding.forward(tf.tensor1d(ids, 'int32'), rec, ctx), [B, S, H]);
      const cat = tf.concat([tf.reshape(this.hNorm.forward(tf.clone(hPrev), rec, ctx), [B * S, H]),
        tf.reshape(this.embNorm.forward(e, rec, ctx), [B * S, H])], -1); // [T, 2H]
      rec.save('mtp.proj.x', cat);
      const h = this.block.forward(tf.reshape(linear(cat, this.params.get(this.projName)), [B, S, H]), rec, ctx);
      return { h, loss: this.head.loss(h, targets, rec) };
    });
  }

  /** Gradient w.r.t. h_{k−1}, given dloss of this depth and dh_k from depth k+1 (or null). */
  backward(dloss: number, dhNext: tf.Tensor | null, rec: SavedActivations, grads: GradStore, ctx: ForwardContext, shape: number[]): tf.Tensor {
    return tf.tidy(() => {
      const [B, S, H] = shape;
      let dh = this.head.backward(dloss, rec, grads, shape);
      if (dhNext) dh = tf.add(dh, dhNext);
      const dp = tf.reshape(this.block.backward(dh, rec, grads, ctx), [B * S, H]);
      const dcat = linearBackward(dp, rec.get('mtp.proj.x'), this.params.get(this.projName), grads, this.projName);
      const [da, de] = tf.split(dcat, 2, -1);
      this.embedding.backward(this.embNorm.backward(tf.reshape(de, shape), rec, grads, ctx), rec, grads, ctx);
      return this.hNorm.backward(tf.reshape(da, shape), rec, grads, ctx);
    });
  }
}
