// MoEGPT: embedding → L transformer blocks (dense SwiGLU first, MoE after) → final norm → LM head,
// plus optional MTP depths, with an explicit forward then backward in reverse layer order.
// Tokens are [B, S] flattened batch-major (token t = b·S + s); the residual stream is [B, S, H];
// the MoE layer sees [T, H].
//
// Records (one SavedActivations each): 'embedding', 'layers.<l>', 'head', 'mtp.<k>'.
// Ownership: layerForward does not take ownership of its input (each block saves a clone) and
// returns a tensor the caller owns; layerBackward disposes the records it consumed.
// Loss: loss = lm + mtpLossCoeff·mean_k(mtp_k) + Σ aux + Σ z; the gradients are those of
// ctx.lossScale·loss (the MoE layers add their aux/z gradients scaled by ctx.lossScale).
import { tf } from '../backend/tf.ts';
import { ConfigError, type ModelConfig } from './config.ts';
import { GradStore, ParamStore, type ForwardContext } from './module.ts';
import { SavedActivations } from './saved.ts';
import { initEmbedding, makeInitWeight, seedOf, type InitMemo, type InitWeight } from './init.ts';
import { Embedding } from './embedding.ts';
import { TransformerBlock, type MoEFactory, type MoELike } from './block.ts';
import { OutputHead } from './head.ts';
import { MTPModule, mtpShift } from './mtp.ts';
import { defaultMoEFactory } from './moe-factory.ts';

export interface LossReport { loss: number; lmLoss: number; mtpLoss: number; auxLoss: number; zLoss: number }
export interface SavedReportEntry { record: string; name: string; shape: number[]; bytes: number }

export interface MoEGPTOptions {
  /** Builds the MoE layers (default: src/model/moe's MoELayer, see moe-factory.ts). */
  makeMoE?: MoEFactory;
  /** Shares the random draws with other models built with the same memo (replicas; init.ts InitMemo). */
  initMemo?: InitMemo;
}

export class MoEGPT {
  readonly params = new ParamStore();
  readonly initWeight: InitWeight;
  readonly embedding: Embedding;
  readonly blocks: TransformerBlock[] = [];
  readonly head: OutputHead;
  readonly mtp: MTPModule[] = [];
  private lastReport: SavedReportEntry[] = [];
  /** Called by forwardBackward between the forward and the backward with every record of the
   *  micro-batch (embedding, layers, head, MTP): the hook for recompute (drop) and swap (toHost) policies. */
  onForwardDone: ((records: SavedActivations[]) => void) | null = null;

  constructor(readonly cfg: ModelConfig, readonly seed: number, opts: MoEGPTOptions = {}) {
    if (cfg.dropout > 0) throw new ConfigError([`dropout ${cfg.dropout}: dropout is not implemented in src/model (all presets use 0)`]);
    const makeMoE = opts.makeMoE ?? defaultMoEFactory();
    this.initWeight = makeInitWeight(cfg, seed, opts.initMemo);
    this.params.add('embedding.weight', initEmbedding(cfg, seed, 'embedding.weight', opts.initMemo), { decay: false });
    this.embedding = new Embedding(this.params, 'embedding.weight');
    for (let l = 0; l < cfg.numLayers; l++)
      this.blocks.push(new TransformerBlock(cfg, l, this.params, `layers.${l}`, this.initWeight, makeMoE));
    let headWeight = 'embedding.weight';
    if (!cfg.tieEmbeddings) {
      headWeight = 'lmHead.weight';
      this.params.add(headWeight, this.initWeight([cfg.hiddenSize, cfg.vocabSize], 'linear', seedOf(headWeight)), { decay: true });
    }
    this.head = new OutputHead(cfg, this.params, 'finalNorm', headWeight, cfg.tieEmbeddings, 'head');
    for (let k = 1; k <= cfg.numMtpLayers; k++)
      this.mtp.push(new MTPModule(cfg, k, this.params, `mtp.${k - 1}`, this.initWeight, makeMoE, this.embedding, headWeight));
  }

  /** MoE layers of the main stack and the MTP blocks (for updateExpertBias/resetGlobalAux). */
  moeLayers(): MoELike[] {
    return [...this.blocks, ...this.mtp.map((m) => m.block)].flatMap((b) => (b.moe ? [b.moe] : []));
  }

  /** Embedding output h0 [B, S, H] (owned by the caller); saves the ids into `rec`. */
  embed(tokens: Int32Array, batch: number, seqLen: number, rec: SavedActivations): tf.Tensor {
    if (tokens.length !== batch * seqLen) throw new Error(`tokens: ${tokens.length} != ${batch}×${seqLen}`);
    if (seqLen > this.cfg.maxSeqLen) throw new Error(`seqLen ${seqLen} > cfg.maxSeqLen ${this.cfg.maxSeqLen}`);
    return tf.tidy(() => tf.reshape(this.embedding.forward(tf.tensor1d(tokens, 'int32'), rec), [batch, seqLen, this.cfg.hiddenSize]));
  }

  /** Embedding backward: dh0 [B, S, H] scattered into the embedding gradient. */
  embedBackward(dh0: tf.Tensor, rec: SavedActivations, grads: GradStore, ctx: ForwardContext): void {
    tf.tidy(() => { this.embedding.backward(tf.reshape(dh0, [-1, this.cfg.hiddenSize]), rec, grads, ctx); });
  }

  /** Last stage: final norm + head + CE of h [B, S, H] (not owned); returns the host lm loss. */
  headForward(h: tf.Tensor, targets: Int32Array, rec: SavedActivations): number {
    const t = tf.tidy(() => this.head.loss(tf.clone(h), targets, rec));
    const v = t.dataSync()[0];
    t.dispose();
    return v;
  }

  /** dh [B, S, H] at the head's input for the lm loss scaled by `dloss` (e.g. ctx.lossScale). */
  headBackward(dloss: number, rec: SavedActivations, grads: GradStore, shape: number[]): tf.Tensor {
    return tf.tidy(() => this.head.backward(dloss, rec, grads, shape));
  }

  /** Blocks [start, end) on h [B, S, H]; recs[l − start] receives layer l's saved activations. */
  layerForward(start: number, end: number, h: tf.Tensor, recs: SavedActivations[], ctx: ForwardContext): tf.Tensor {
    let x = h;
    for (let l = start; l < end; l++) {
      const y = tf.tidy(() => this.blocks[l].forward(tf.clone(x), recs[l - start], ctx));
      if (x !== h) x.dispose();
      x = y;
    }
    return x === h ? tf.clone(h) : x;
  }

  /** Backward through blocks end−1 … start; returns dh at the input of `start`; disposes recs. */
  layerBackward(start: number, end: number, dh: tf.Tensor, recs: SavedActivations[], grads: GradStore, ctx: ForwardContext): tf.Tensor {
    let d = dh;
    for (let l = end - 1; l >= start; l--) {
      const dn = tf.tidy(() => this.blocks[l].backward(d, recs[l - start], grads, ctx));
      recs[l - start].dispose();
      if (d !== dh) d.dispose();
      d = dn;
    }
    return d === dh ? tf.clone(dh) : d;
  }

  private newRecords() {
    return {
      embedding: new SavedActivations('embedding'),
      layers: this.blocks.map((_, l) => new SavedActivations(`layers.${l}`)),
      head: new SavedActivations('head'),
      mtp: this.mtp.map((_, k) => new SavedActivations(`mtp.${k}`)),
    };
  }

  private allRecords(r: ReturnType<MoEGPT['newRecords']>): SavedActivations[] {
    return [r.embedding, ...r.layers, r.head, ...r.mtp];
  }

  /** Training step of one micro-batch: forward, backward into `grads`, all records disposed. */
  forwardBackward(tokens: Int32Array, targets: Int32Array, batch: number, seqLen: number, ctx: ForwardContext, grads: GradStore): LossReport {
    const recs = this.newRecords();
    const stats0 = ctx.routerStats.length;
    const shape = [batch, seqLen, this.cfg.hiddenSize];
    const live: tf.Tensor[] = [];
    try {
      const { lm, mtp } = this.forwardAll(tokens, targets, batch, seqLen, recs, ctx, live);
      this.lastReport = this.allRecords(recs).flatMap((r) => r.list().map((i) => ({ record: r.owner, name: i.name, shape: i.shape, bytes: i.bytes })));
      this.onForwardDone?.(this.allRecords(recs));
      // backward: MTP depths D … 1, then the head, then the blocks, then the embedding
      const D = this.mtp.length, s = ctx.lossScale;
      let dh: tf.Tensor | null = null;
      for (let k = D - 1; k >= 0; k--) {
        const dPrev: tf.Tensor = this.mtp[k].backward(s * this.cfg.mtpLossCoeff / D, dh, recs.mtp[k], grads, ctx, shape);
        dh?.dispose();
        dh = dPrev;
        recs.mtp[k].dispose();
      }
      const dHead = this.headBackward(s, recs.head, grads, shape);
      recs.head.dispose();
      const dL = dh ? tf.add(dHead, dh) : dHead;
      if (dh) { dh.dispose(); dHead.dispose(); }
      const d0 = this.layerBackward(0, this.blocks.length, dL, recs.layers, grads, ctx);
      dL.dispose();
      this.embedBackward(d0, recs.embedding, grads, ctx);
      d0.dispose();
      return this.report(lm, mtp, ctx, stats0);
    } finally {
      for (const t of live) t.dispose();
      for (const r of this.allRecords(recs)) r.dispose();
    }
  }

  /** Evaluation loss (no gradients, no router statistics, nothing kept). */
  forwardLoss(tokens: Int32Array, targets: Int32Array, batch: number, seqLen: number, ctx: Partial<ForwardContext> = {}): LossReport {
    const c: ForwardContext = { lossScale: 1, seed: 1, ...ctx, training: false, recordStats: false, routerStats: [] };
    const recs = this.newRecords(), live: tf.Tensor[] = [];
    try {
      const { lm, mtp } = this.forwardAll(tokens, targets, batch, seqLen, recs, c, live);
      return this.report(lm, mtp, c, 0);
    } finally {
      for (const t of live) t.dispose();
      for (const r of this.allRecords(recs)) r.dispose();
    }
  }

  /** Logits [B·S, V] of the main head (for sampling); the caller disposes them. */
  logits(tokens: Int32Array, batch: number, seqLen: number): tf.Tensor {
    const ctx: ForwardContext = { training: false, lossScale: 1, seed: 1, routerStats: [], recordStats: false };
    const recs = this.newRecords();
    let h = this.embed(tokens, batch, seqLen, recs.embedding);
    try {
      for (let l = 0; l < this.blocks.length; l++) {
        const y = this.layerForward(l, l + 1, h, [recs.layers[l]], ctx);
        recs.layers[l].dispose(); // eval: free each layer as soon as it has run
        h.dispose();
        h = y;
      }
      return tf.tidy(() => this.head.logits(tf.clone(h), recs.head));
    } finally {
      h.dispose();
      for (const r of this.allRecords(recs)) r.dispose();
    }
  }

  /** Shared forward; tensors to free at the end go to `live`. */
  private forwardAll(tokens: Int32Array, targets: Int32Array, batch: number, seqLen: number,
    recs: ReturnType<MoEGPT['newRecords']>, ctx: ForwardContext, live: tf.Tensor[]) {
    if (targets.length !== batch * seqLen) throw new Error(`targets: ${targets.length} != ${batch}×${seqLen}`);
    const h0 = this.embed(tokens, batch, seqLen, recs.embedding);
    const hL = this.layerForward(0, this.blocks.length, h0, recs.layers, ctx); live.push(hL);
    h0.dispose(); // layer 0 saved its own clone
    const lm = this.headForward(hL, targets, recs.head);
    let mtp = 0, hPrev = hL;
    for (let k = 0; k < this.mtp.length; k++) {
      const sh = mtpShift(targets, batch, seqLen, k + 1);
      const { h, loss } = this.mtp[k].forward(hPrev, sh.ids, sh.targets, recs.mtp[k], ctx);
      live.push(h, loss);
      mtp += loss.dataSync()[0] / this.mtp.length;
      hPrev = h;
    }
    return { lm, mtp };
  }

  private report(lm: number, mtp: number, ctx: ForwardContext, stats0: number): LossReport {
    let auxLoss = 0, zLoss = 0;
    for (const st of ctx.routerStats.slice(stats0))
      for (const [k, v] of Object.entries(st.auxLosses)) { if (k === 'z') zLoss += v; else auxLoss += v; }
    return { loss: lm + this.cfg.mtpLossCoeff * mtp + auxLoss + zLoss, lmLoss: lm, mtpLoss: mtp, auxLoss, zLoss };
  }

  /** Saved activations of the last training forward: record, name, shape, bytes. */
  savedActivationReport(): SavedReportEntry[] { return this.lastReport.slice(); }

  dispose(): void { this.params.dispose(); }
}

export { GradStore };
