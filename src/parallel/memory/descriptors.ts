// Saved-activation descriptors: what the memory planners reason about, one entry per named tensor a
// layer's forward keeps for its backward (per micro-batch). Built from the model's `SavedActivations`
// records (`list()` gives name/shape/bytes) or, for planning without tensors, from config shapes
// (`modelDescriptors`).
//
// Name → module class (the vocabulary of `recomputeModules` / `offloadModules`), see `moduleOfSaved`:
//   attnNorm.x, mlpNorm.x, attnPostNorm.x, mlpPostNorm.x (+ .rstd)  → residual   (swap or full recompute only)
//   mla.x, moe.x | x (MoE input), mlp.x, mla.qLatent, mla.kvLatent  → norm       (norm outputs: cheap to redo)
//   mla.qANorm.*, mla.kvANorm.* (latent before its norm)             → mla_down_proj
//   mla.q, mla.kvUp, mla.kRope; attn.q/k/v (GQA)                      → mla_up_proj / qkv_linear (the Q/K/V vectors)
//   mla.probs, attn.probs, *.probs inside attention                   → core_attn
//   mla.ctx, attn.ctx (core-attention output, out-proj input)         → attn_proj
//   router*, routerJitter, sharedGate                                 → router
//   permutedTokens, permutedProbs (moe.)                              → permute    (recompute re-runs the dispatch)
//   fc1Out, fc3Out (moe.)                                             → expert_fc1
//   act (moe.)                                                        → moe_act    (routed SwiGLU output)
//   sharedFc1Out, sharedFc3Out; mlp.fc1                               → mlp_fc1
//   sharedAct; mlp.act                                                → mlp_act    (shared / dense SwiGLU output)
import type { ModelConfig } from '../../model/config.ts';

export type ModuleClass =
  | 'residual' | 'norm' | 'mla_down_proj' | 'mla_up_proj' | 'qkv_linear' | 'core_attn' | 'attn_proj'
  | 'router' | 'permute' | 'expert_fc1' | 'moe_act' | 'mlp_fc1' | 'mlp_act' | 'other';

export const MODULE_CLASSES: readonly ModuleClass[] = [
  'residual', 'norm', 'mla_down_proj', 'mla_up_proj', 'qkv_linear', 'core_attn', 'attn_proj',
  'router', 'permute', 'expert_fc1', 'moe_act', 'mlp_fc1', 'mlp_act', 'other',
];

export interface SavedActivationDesc {
  /** Global layer index. */
  layer: number;
  module: ModuleClass;
  /** The saved name inside the layer's record, e.g. 'mla.kvUp', 'moe.act', 'attnNorm.x'. */
  name: string;
  /** Bytes per micro-batch. */
  bytes: number;
  /** FLOPs to rebuild it from tensors that stay resident (the forward op that produced it). */
  recomputeFlops: number;
  /** Communication bytes a recompute repeats (permute recompute re-runs the EP dispatch). */
  recomputeCommBytes?: number;
  /** False when selective recompute cannot rebuild it (the residual stream); full recompute still can. */
  recomputable?: boolean;
}

/** Module class of a saved name (`owner` = record owner, used when the name alone is ambiguous). */
export function moduleOfSaved(name: string, owner = ''): ModuleClass {
  const n = name.replace(/^layers\.\d+[.:]/, '');
  const leaf = n.split('.').pop()!;
  const inMoE = /^moe\./.test(n) || /moe|expert/.test(owner);
  if (/^(attnNorm|mlpNorm|attnPostNorm|mlpPostNorm|inputNorm|preMlpNorm)\./.test(n)) return 'residual';
  if (/^mla\.(qANorm|kvANorm)\./.test(n)) return 'mla_down_proj';
  if (/^mla\.(q|kvUp|kRope)$/.test(n)) return 'mla_up_proj';
  if (/^attn\.(q|k|v|kv|qkv)$/.test(n)) return 'qkv_linear';
  if (leaf === 'probs' && (/^(mla|attn)\./.test(n) || /attn|mla/.test(owner))) return 'core_attn';
  if (/^(mla|attn)\.ctx$/.test(n)) return 'attn_proj';
  if (/^(mla|attn|mlp)\.x$/.test(n) || /^mla\.(qLatent|kvLatent)$/.test(n) || ((inMoE || n === 'x') && leaf === 'x')) return 'norm';
  if (/^(router|routerJitter|sharedGate)/.test(leaf)) return 'router';
  if (/^permuted(Tokens|Probs)$/.test(leaf)) return 'permute';
  if (/^shared(Fc1Out|Fc3Out)$/.test(leaf) || /^mlp\.fc1$/.test(n)) return 'mlp_fc1';
  if (leaf === 'sharedAct' || /^mlp\.act$/.test(n)) return 'mlp_act';
  if (/^fc[13]Out$/.test(leaf)) return 'expert_fc1';
  if (leaf === 'act' && (inMoE || n === 'act')) return 'moe_act';
  return 'other';
}

export interface LayoutOptions {
  seqLen: number;
  microBatchSize: number;
  /** 4 for the fp32 tfjs model (what SavedActivations counts), 2 for bf16. */
  bytesPerElement?: number;
  /** Layers to describe (default: all). */
  layers?: number[];
  /** Expert-parallel size: with EP > 1, permute recompute repeats (EP−1)/EP of the dispatch bytes. */
  ep?: number;
  /** Tokens on the busiest expert rank / mean (dropless MoE), scales the expert-side tensors. */
  expertImbalance?: number;
}

/**
 * The saved activations of each layer of `cfg` for one micro-batch, with the model's names (one
 * record per layer; MoE names prefixed 'moe.'). FLOPs per token follow the forward ops:
 * linear m×n: 2mn; attention core QK: 2·a·s·(dn+dr), AV: 2·a·s·dv; SwiGLU: ~4 FLOPs/element.
 */
export function modelDescriptors(cfg: ModelConfig, o: LayoutOptions): SavedActivationDesc[] {
  return modelLayout(cfg, o).descs;
}

export interface ModelLayout {
  descs: SavedActivationDesc[];
  /** Forward FLOPs per layer and micro-batch, including ops whose output is not saved (out-proj, fc2). */
  forwardFlops: Map<number, number>;
}

export function modelLayout(cfg: ModelConfig, o: LayoutOptions): ModelLayout {
  const T = o.seqLen * o.microBatchSize, s = o.seqLen, h = cfg.hiddenSize, a = cfg.numHeads;
  const b = o.bytesPerElement ?? 4;
  const ep = o.ep ?? 1, imb = o.expertImbalance ?? 1;
  const sandwich = cfg.norm === 'sandwich';
  const out: SavedActivationDesc[] = [];
  const forwardFlops = new Map<number, number>();
  const layers = o.layers ?? Array.from({ length: cfg.numLayers }, (_, l) => l);
  for (const l of layers) {
    const add = (name: string, perToken: number, flopsPerToken: number, extra: Partial<SavedActivationDesc> = {}) =>
      out.push({ layer: l, module: moduleOfSaved(name), name, bytes: T * perToken * b, recomputeFlops: T * flopsPerToken, ...extra });
    const residual = (tag: string) => {
      add(`${tag}.x`, h, 0, { recomputable: false });
      add(`${tag}.rstd`, 1, 0, { recomputable: false });
    };
    let unsaved = 0; // per token
    residual('attnNorm');
    if (cfg.attention === 'mla') {
      const m = cfg.mla!;
      const dqk = m.qkNopeHeadDim + m.qkRopeHeadDim;
      add('mla.x', h, 4 * h);
      if (m.qLoraRank !== null) {
        add('mla.qANorm.x', m.qLoraRank, 2 * h * m.qLoraRank);
        add('mla.qANorm.rstd', 1, 0);
        add('mla.qLatent', m.qLoraRank, 4 * m.qLoraRank);
        add('mla.q', a * dqk, 2 * m.qLoraRank * a * dqk);
      } else add('mla.q', a * dqk, 2 * h * a * dqk);
      add('mla.kvANorm.x', m.kvLoraRank, 2 * h * (m.kvLoraRank + m.qkRopeHeadDim));
      add('mla.kvANorm.rstd', 1, 0);
      add('mla.kvLatent', m.kvLoraRank, 4 * m.kvLoraRank);
      add('mla.kvUp', a * (m.qkNopeHeadDim + m.vHeadDim), 2 * m.kvLoraRank * a * (m.qkNopeHeadDim + m.vHeadDim));
      add('mla.kRope', m.qkRopeHeadDim, 6 * m.qkRopeHeadDim);
      add('mla.probs', a * s, 2 * a * s * dqk + 5 * a * s);
      add('mla.ctx', a * m.vHeadDim, 2 * a * s * m.vHeadDim);
      unsaved += 2 * a * m.vHeadDim * h; // out-proj
    } else {
      const kv = cfg.numKvHeads * cfg.headDim;
      add('attn.x', h, 4 * h);
      add('attn.q', a * cfg.headDim, 2 * h * a * cfg.headDim);
      add('attn.k', kv, 2 * h * kv);
      add('attn.v', kv, 2 * h * kv);
      add('attn.probs', a * s, 2 * a * s * cfg.headDim + 5 * a * s);
      add('attn.ctx', a * cfg.headDim, 2 * a * s * cfg.headDim);
      unsaved += 2 * a * cfg.headDim * h;
    }
    if (sandwich) residual('attnPostNorm');
    residual('mlpNorm');
    const isMoE = l >= cfg.numDenseLayers;
    if (!isMoE) {
      const F = cfg.denseIntermediateSize;
      add('mlp.x', h, 4 * h);
      add('mlp.fc1', 2 * F, 2 * h * 2 * F);
      add('mlp.act', F, 4 * F);
      unsaved += 2 * F * h;
    } else {
      const moe = cfg.moe, k = moe.topk, f = moe.expertHiddenSize, fs = moe.numSharedExperts * f;
      add('moe.x', h, 4 * h);
      unsaved += 2 * h * moe.numExperts + 2 * k * f * h * imb + 2 * fs * h; // router gate, expert fc2, shared fc2
      add('moe.permutedTokens', k * h * imb, 0, { recomputeCommBytes: ep > 1 ? (T * k * h * b * imb * (ep - 1)) / ep : 0 });
      add('moe.permutedProbs', k * imb, 0);
      add('moe.fc1Out', k * f * imb, 2 * h * f * k * imb);
      add('moe.fc3Out', k * f * imb, 2 * h * f * k * imb);
      add('moe.act', k * f * imb, 4 * k * f * imb);
      if (fs > 0) {
        add('moe.sharedFc1Out', fs, 2 * h * fs);
        add('moe.sharedFc3Out', fs, 2 * h * fs);
        add('moe.sharedAct', fs, 4 * fs);
        if (moe.sharedExpertGate) add('moe.sharedGate', 1, 2 * h);
      }
    }
    if (sandwich) residual('mlpPostNorm');
    forwardFlops.set(l, layerForwardFlops(out, l) + T * unsaved);
  }
  return { descs: out, forwardFlops };
}

/** Per-layer forward FLOPs implied by the descriptors (what a full-layer recompute repeats). */
export function layerForwardFlops(descs: SavedActivationDesc[], layer: number): number {
  return descs.filter((d) => d.layer === layer).reduce((a, d) => a + d.recomputeFlops, 0);
}

/** Sum of bytes per module class (one micro-batch). */
export function bytesByModule(descs: SavedActivationDesc[]): Map<ModuleClass, number> {
  const m = new Map<ModuleClass, number>();
  for (const d of descs) m.set(d.module, (m.get(d.module) ?? 0) + d.bytes);
  return m;
}
