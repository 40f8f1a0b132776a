// Per-model constants the cost model needs, computed once per (model, seqLen) so that evaluating
// many parallel layouts is plain arithmetic: forward FLOPs per token per block, parameters per
// block, and stored activation bytes per token per block split by what each recompute module drops.
import type { ModelConfig } from '../model/config.ts';
import { countParams } from '../model/params-count.ts';
import { layerCounts, layerFlops, modelFlops, type LayerFlops } from '../model/flops.ts';
import type { RecomputeModule } from './types.ts';

/** Stored activation bytes per token (bf16) of one block, by the module whose recompute drops them. */
export interface ActTerms {
  /** always kept (inputs of the block / residual stream, router scores, ...) */
  keep: number;
  byModule: Partial<Record<RecomputeModule, number>>;
  /** part of `keep` + byModule that swap-attention can offload */
  swappable: number;
}

/**
 * Modules whose stored tensors are GEMM inputs (norm outputs feed QKV/fc1, activation outputs feed
 * fc2, permuted tokens feed the expert fc1). Under FP8 training Transformer Engine saves the quantised
 * FP8 copy of a GEMM input for the weight-gradient GEMM, so these take 1 byte instead of 2
 * (DeepSeek-V3 report §3.3 "low-precision storage"; TE Linear saves its FP8 input).
 */
export const FP8_CACHED_MODULES: ReadonlySet<RecomputeModule> = new Set(['norm', 'activation', 'moe-act', 'permute']);

export interface ModelCost {
  cfg: ModelConfig;
  seqLen: number;
  /** MFU convention: causal attention halved (Megatron) or not */
  causal: boolean;
  gatedMlp: boolean;
  /** forward FLOPs per token per block as executed (causal attention kernels skip the masked half) */
  f: LayerFlops;
  layers: number;      // pipeline layers incl. MTP
  denseLayers: number;
  moeLayers: number;
  hasMoE: boolean;
  flopsPerToken: number;
  params: {
    attnLayer: number;       // attention + norms (TP-sharded)
    denseMlp: number;        // dense MLP (TP-sharded)
    moeShared: number;       // shared expert + router (TP-sharded / replicated)
    expertsPerLayer: number; // all routed experts of one MoE layer (EP-sharded)
    embedding: number;
    output: number;
    mtpExtra: number;
  };
  /** activation bytes per token (before dividing by TP·CP) */
  actAttn: ActTerms;
  actDenseMlp: ActTerms;
  /** per routed copy, multiply by k·ρ */
  actExpertCopy: ActTerms;
  /** router scores + shared expert, per token */
  actMoeShared: ActTerms;
  /** full recompute keeps only the layer input */
  actLayerInput: number;
  /** forward FLOPs of the output head(s) (main + MTP) in units of an average layer's forward FLOPs */
  headLayers: number;
}

const B = 2; // bf16 activations

export function modelCost(cfg: ModelConfig, seqLen: number, causal = true, gatedMlp = true): ModelCost {
  const f = layerFlops(cfg, seqLen, true, gatedMlp);
  const c = layerCounts(cfg);
  const pc = countParams(cfg);
  const h = cfg.hiddenSize, a = cfg.numHeads, moe = cfg.moe;
  const sandwich = cfg.norm === 'sandwich';
  const ffnMul = gatedMlp ? 2 : 1; // fc1 outputs (gate + up) for SwiGLU

  // attention block: norm input (residual), norm output, projections' inputs/outputs, core output
  let attnKeep: number, attnUp: number;
  if (cfg.attention === 'mla') {
    const m = cfg.mla!;
    const dqk = m.qkNopeHeadDim + m.qkRopeHeadDim;
    // latents (q_a, kv_a outputs and their normed copies) are kept; q/k/v up-projections are recomputable
    attnKeep = B * ((m.qLoraRank ?? 0) * 2 + m.kvLoraRank * 2 + m.qkRopeHeadDim) + B * a * m.vHeadDim + 4 * a * 2;
    attnUp = B * a * (2 * dqk + m.vHeadDim);
  } else {
    const q = a * cfg.headDim, kv = cfg.numKvHeads * cfg.headDim;
    attnKeep = B * q /* core out */ + 4 * a * 2;
    attnUp = B * (q + 2 * kv);
  }
  const normsAttn = B * h * (sandwich ? 2 : 1); // norm outputs (pre, and post for sandwich)
  const actAttn: ActTerms = {
    keep: B * h + attnKeep + (cfg.attention === 'mla' ? 0 : attnUp),
    byModule: { norm: normsAttn, 'mla-up-proj': cfg.attention === 'mla' ? attnUp : 0 },
    swappable: 0,
  };
  actAttn.swappable = actAttn.keep + normsAttn + (actAttn.byModule['mla-up-proj'] ?? 0) - B * h;

  const fd = cfg.denseIntermediateSize;
  const actDenseMlp: ActTerms = {
    keep: B * h + B * ffnMul * fd,
    byModule: { norm: B * h * (sandwich ? 2 : 1), activation: B * fd },
    swappable: 0,
  };
  const fe = moe.expertHiddenSize, fs = moe.expertHiddenSize * moe.numSharedExperts;
  // per routed copy: fc1 input (the permuted token), fc1 output (SwiGLU input) and the activation
  // output (fc2 input). The routing probability is applied inside the activation (Megatron-core
  // experts.py and MindSpeed `activation_func_with_probs`), so the fc2 output is not stored.
  const actExpertCopy: ActTerms = {
    keep: B * ffnMul * fe + 4 /* fp32 prob */,
    byModule: { permute: B * h, 'moe-act': B * fe },
    swappable: 0,
  };
  const actMoeShared: ActTerms = {
    keep: B * h + 4 * moe.numExperts + B * ffnMul * fs,
    byModule: { norm: B * h * (sandwich ? 2 : 1), activation: B * fs },
    swappable: 0,
  };

  const hasMoE = cfg.numLayers > cfg.numDenseLayers;
  const lastIsMoE = hasMoE;
  const moeShare = hasMoE ? c.moeLayers / c.layers : 0;
  const layerFwd = f.attnLinear + f.attnCore + moeShare * (moe.topk * f.expertPerCopy + f.sharedExpert + f.router) + (1 - moeShare) * f.denseMlp;
  const headLayers = layerFwd > 0 ? ((1 + cfg.numMtpLayers) * f.logits + cfg.numMtpLayers * f.mtpExtra) / layerFwd : 0;
  return {
    cfg, seqLen, causal, gatedMlp, f,
    layers: c.layers, denseLayers: c.denseLayers, moeLayers: c.moeLayers, hasMoE,
    flopsPerToken: modelFlops(cfg, { seqLen, causal, gatedMlp }).flopsPerToken,
    params: {
      attnLayer: pc.attentionPerLayer + pc.normsPerLayer,
      denseMlp: gatedMlp ? pc.denseMlpPerLayer : (pc.denseMlpPerLayer * 2) / 3,
      moeShared: pc.sharedExpertPerLayer + pc.routerPerLayer,
      expertsPerLayer: hasMoE || lastIsMoE ? pc.expertPerExpert * moe.numExperts : 0,
      embedding: pc.embedding,
      output: pc.outputLayer,
      mtpExtra: cfg.numMtpLayers > 0 ? 2 * h + 2 * h * h + h : 0,
    },
    actAttn, actDenseMlp, actExpertCopy, actMoeShared,
    actLayerInput: B * h,
    headLayers,
  };
}

/** Bytes per token left on device for a block after recomputing `modules` (GEMM inputs at 1 B under FP8). */
export function keptBytes(t: ActTerms, modules: ReadonlySet<RecomputeModule> | null, fp8 = false): number {
  let s = t.keep;
  for (const k in t.byModule) {
    const m = k as RecomputeModule;
    if (!modules || !modules.has(m)) s += (t.byModule[m] ?? 0) * (fp8 && FP8_CACHED_MODULES.has(m) ? 0.5 : 1);
  }
  return s;
}
