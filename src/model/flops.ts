// Model FLOPs by the Megatron-LM convention (`num_floating_point_operations` in
// megatron/training/training.py; perf-model.md §2.1, pangu-ultra-moe.md §7). Pure arithmetic.
//
// Convention: F = 3 (fwd, dgrad, wgrad GEMMs), M = 2 (FMA), SwiGLU multiplier 3 (2 for a plain
// GELU MLP). MTP layers count as extra layers of the last layer's type, plus their eh-projection
// and norms; logits are counted once per (1 + MTP) heads. Core attention is halved for the causal
// mask (current Megatron); `causal: false` gives the older Narayanan/PaLM non-causal convention.
// Not counted (as in Megatron): router GEMM, norms, softmax, RoPE. `router` is reported separately.
import { isMoELayer, type ModelConfig } from './config.ts';

export interface FlopsOptions {
  seqLen: number;
  /** Sequences per iteration (global batch). Default 1. */
  batch?: number;
  /** Halve core attention for the causal mask (Megatron today). Default true. */
  causal?: boolean;
  /** SwiGLU (3 GEMMs) vs a plain 2-GEMM MLP (GPT-3 style). Default true. */
  gatedMlp?: boolean;
}

/** Forward FLOPs per token of each building block (no fwd+bwd factor), for cost models. */
export interface LayerFlops {
  /** attention projections of one layer (q/kv/o, incl. MLA LoRA) */
  attnLinear: number;
  /** core attention (QKᵀ and ·V) of one layer at this seqLen, causal-halved if requested */
  attnCore: number;
  denseMlp: number;
  /** one routed expert applied to one token */
  expertPerCopy: number;
  sharedExpert: number;
  router: number;
  /** output layer (one head) */
  logits: number;
  /** MTP eh-projection + norms (per MTP module, without its transformer layer) */
  mtpExtra: number;
}

export interface FlopsBreakdown {
  /** Training (fwd+bwd) FLOPs per token, by component. */
  perToken: {
    attentionLinear: number;
    coreAttention: number;
    denseMlp: number;
    routedExperts: number;
    sharedExperts: number;
    mtpExtra: number;
    logits: number;
    total: number;
  };
  /** Not in the Megatron total: router GEMM fwd+bwd per token. */
  routerPerToken: number;
  flopsPerToken: number;
  flopsPerIteration: number;
  tokensPerIteration: number;
  /** 6·N_activated, the rule of thumb, for comparison. */
  sixN: number;
  counts: { layers: number; denseLayers: number; moeLayers: number; mtpLayers: number };
  causal: boolean;
}

/** Forward FLOPs per token of each block (2·m·n·k per token row). */
export function layerFlops(cfg: ModelConfig, seqLen: number, causal = true, gatedMlp = true): LayerFlops {
  const h = cfg.hiddenSize, a = cfg.numHeads, moe = cfg.moe;
  const e = gatedMlp ? 3 : 2;
  const causalFactor = causal ? 0.5 : 1;
  let attnLinear: number, attnCore: number;
  if (cfg.attention === 'mla') {
    const m = cfg.mla!;
    const dqk = m.qkNopeHeadDim + m.qkRopeHeadDim;
    const qTerm = m.qLoraRank === null ? h * a * dqk : m.qLoraRank * (h + a * dqk + 1);
    attnLinear = 2 * (qTerm + m.kvLoraRank * (h + a * (m.qkNopeHeadDim + m.vHeadDim) + 1) + h * m.qkRopeHeadDim + a * m.vHeadDim * h);
    attnCore = 2 * seqLen * causalFactor * (a * dqk + a * m.vHeadDim);
  } else {
    const q = a * cfg.headDim, kv = cfg.numKvHeads * cfg.headDim;
    attnLinear = 2 * (h * (q + 2 * kv) + q * h);
    attnCore = 2 * seqLen * causalFactor * 2 * q;
  }
  return {
    attnLinear, attnCore,
    denseMlp: 2 * h * cfg.denseIntermediateSize * e,
    expertPerCopy: 2 * h * moe.expertHiddenSize * e,
    sharedExpert: 2 * h * moe.expertHiddenSize * moe.numSharedExperts * e,
    router: 2 * h * moe.numExperts,
    logits: 2 * h * cfg.vocabSize,
    mtpExtra: 2 * (3 * h + 2 * h * h),
  };
}

/** Layer counts with MTP layers attributed to the last layer's type (Megatron). */
export function layerCounts(cfg: ModelConfig): { layers: number; denseLayers: number; moeLayers: number; mtpLayers: number } {
  const mtp = cfg.numMtpLayers;
  const lastIsMoE = cfg.numLayers > 0 && isMoELayer(cfg, cfg.numLayers - 1);
  const moeBase = Math.max(0, cfg.numLayers - cfg.numDenseLayers);
  return {
    layers: cfg.numLayers + mtp,
    denseLayers: cfg.numDenseLayers + (lastIsMoE ? 0 : mtp),
    moeLayers: moeBase + (lastIsMoE ? mtp : 0),
    mtpLayers: mtp,
  };
}

/** Megatron model FLOPs for one iteration of `batch` sequences of `seqLen` tokens. */
export function modelFlops(cfg: ModelConfig, opts: FlopsOptions): FlopsBreakdown {
  const causal = opts.causal ?? true;
  const batch = opts.batch ?? 1;
  const f = layerFlops(cfg, opts.seqLen, causal, opts.gatedMlp ?? true);
  const c = layerCounts(cfg);
  const FB = 3; // fwd + 2× bwd
  const k = cfg.moe.topk;
  const perToken = {
    attentionLinear: FB * f.attnLinear * c.layers,
    coreAttention: FB * f.attnCore * c.layers,
    denseMlp: FB * f.denseMlp * c.denseLayers,
    routedExperts: FB * f.expertPerCopy * k * c.moeLayers,
    sharedExperts: FB * f.sharedExpert * c.moeLayers,
    mtpExtra: FB * f.mtpExtra * c.mtpLayers,
    logits: FB * f.logits * (c.mtpLayers + 1),
    total: 0,
  };
  perToken.total = perToken.attentionLinear + perToken.coreAttention + perToken.denseMlp + perToken.routedExperts
    + perToken.sharedExperts + perToken.mtpExtra + perToken.logits;
  const tokens = batch * opts.seqLen;
  // activated matmul params: everything a token touches except the input embedding (6·N rule of thumb)
  const activatedMatmul = (f.attnLinear * (cfg.numLayers) + f.denseMlp * cfg.numDenseLayers
    + (f.expertPerCopy * k + f.sharedExpert) * Math.max(0, cfg.numLayers - cfg.numDenseLayers) + f.logits) / 2;
  return {
    perToken,
    routerPerToken: FB * f.router * c.moeLayers,
    flopsPerToken: perToken.total,
    flopsPerIteration: perToken.total * tokens,
    tokensPerIteration: tokens,
    sixN: 6 * activatedMatmul,
    counts: c,
    causal,
  };
}
