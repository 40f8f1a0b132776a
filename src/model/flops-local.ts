// Model FLOPs per token of a training step (fwd + bwd), Megatron convention (perf-model.md §2.1):
// F = 3 GEMM passes × M = 2 (FMA) on every token-linear GEMM, SwiGLU = 3 GEMMs, causal core
// attention halved, MTP layers counted as layers of the last layer's type plus their 2h→h
// projection (and 3h of norms), logits once per head (1 + MTP). Router GEMM, norms, softmax and
// RoPE are not counted. Used for the local MFU / achieved GFLOP/s of bench/model.ts.
// (src/model/flops.ts is the simulator's breakdown of the same convention; tests check they agree.)
import { isMoELayer, type ModelConfig } from './config.ts';

export interface LocalFlops { linear: number; core: number; total: number }

/** Training FLOPs per token at sequence length `seqLen`. */
export function modelFlopsPerTokenBreakdown(cfg: ModelConfig, seqLen: number): LocalFlops {
  const h = cfg.hiddenSize, a = cfg.numHeads, moe = cfg.moe, FM = 6, mtp = cfg.numMtpLayers;
  let attn: number, core: number;
  if (cfg.attention === 'mla') {
    const m = cfg.mla!, dqk = m.qkNopeHeadDim, dr = m.qkRopeHeadDim, dv = m.vHeadDim;
    const qTerm = m.qLoraRank === null ? h * a * (dqk + dr) : m.qLoraRank * (h + a * (dqk + dr) + 1);
    attn = qTerm + m.kvLoraRank * (h + a * (dqk + dv) + 1) + h * dr + a * dv * h;
    core = 3 * (a * (dqk + dr) + a * dv);       // F·M·(a(d_qk+d_rope)/2 + a·d_v/2)
  } else {
    const q = a * cfg.headDim, kv = cfg.numKvHeads * cfg.headDim;
    attn = h * (q + 2 * kv) + q * h;
    core = 6 * q;                                // F·M·q/2·2
  }
  const dense = h * cfg.denseIntermediateSize * 3;
  const moeLayer = h * (moe.expertHiddenSize * moe.topk * 3 + moe.expertHiddenSize * moe.numSharedExperts * 3);
  let nDense = 0, nMoE = 0;
  for (let l = 0; l < cfg.numLayers; l++) if (isMoELayer(cfg, l)) nMoE++; else nDense++;
  if (mtp > 0) { if (isMoELayer(cfg, cfg.numLayers - 1)) nMoE += mtp; else nDense += mtp; }
  const nAttn = cfg.numLayers + mtp;
  const linear = FM * (attn * nAttn + dense * nDense + moeLayer * nMoE + mtp * (3 * h + 2 * h * h) + h * cfg.vocabSize * (mtp + 1));
  const coreTotal = seqLen * core * nAttn;     // S₂/T = s for unpacked sequences
  return { linear, core: coreTotal, total: linear + coreTotal };
}

export function modelFlopsPerToken(cfg: ModelConfig, seqLen: number): number {
  return modelFlopsPerTokenBreakdown(cfg, seqLen).total;
}
