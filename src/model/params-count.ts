// Parameter counts of a ModelConfig, by component, following the layer shapes of src/model
// (and Megatron's theoretical_memory_usage.py). Pure arithmetic: the simulator uses it for
// memory and the presets' published sizes are checked against it.
import { isMoELayer, type ModelConfig } from './config.ts';

export interface ParamCounts {
  embedding: number;        // input embedding
  outputLayer: number;      // lm head (0 when tied)
  attentionPerLayer: number;
  denseMlpPerLayer: number;
  expertPerExpert: number;  // one routed expert (SwiGLU: 3·h·f)
  sharedExpertPerLayer: number;
  routerPerLayer: number;
  normsPerLayer: number;
  mtp: number;              // all MTP modules (excluded from `total`)
  /** Everything but the MTP modules (the paper's 718B convention). */
  total: number;
  /** Per-token activated: total minus input embedding minus (E−k) routed experts per MoE layer. */
  activated: number;
  totalWithMtp: number;
}

export function attentionParams(cfg: ModelConfig): number {
  const h = cfg.hiddenSize, a = cfg.numHeads;
  if (cfg.attention === 'gqa') {
    const q = a * cfg.headDim, kv = cfg.numKvHeads * cfg.headDim;
    return h * q + 2 * h * kv + q * h;
  }
  const m = cfg.mla!;
  const dqk = m.qkNopeHeadDim + m.qkRopeHeadDim;
  const qTerm = m.qLoraRank === null
    ? h * a * dqk
    : h * m.qLoraRank + m.qLoraRank /* q_a norm */ + m.qLoraRank * a * dqk;
  const kvTerm = h * (m.kvLoraRank + m.qkRopeHeadDim) + m.kvLoraRank /* kv_a norm */
    + m.kvLoraRank * a * (m.qkNopeHeadDim + m.vHeadDim);
  return qTerm + kvTerm + a * m.vHeadDim * h;
}

export function countParams(cfg: ModelConfig): ParamCounts {
  const h = cfg.hiddenSize, moe = cfg.moe;
  const embedding = cfg.vocabSize * h;
  const outputLayer = cfg.tieEmbeddings ? 0 : cfg.vocabSize * h;
  const attentionPerLayer = attentionParams(cfg);
  const denseMlpPerLayer = 3 * h * cfg.denseIntermediateSize;
  const expertPerExpert = 3 * h * moe.expertHiddenSize;
  const sharedExpertPerLayer = 3 * h * moe.expertHiddenSize * moe.numSharedExperts + (moe.sharedExpertGate ? h : 0);
  const routerPerLayer = h * moe.numExperts;
  const normsPerLayer = h * (cfg.norm === 'sandwich' ? 4 : 2);
  const finalNorm = h;

  let layers = 0, inactive = 0;
  for (let l = 0; l < cfg.numLayers; l++) {
    layers += attentionPerLayer + normsPerLayer;
    if (isMoELayer(cfg, l)) {
      layers += moe.numExperts * expertPerExpert + sharedExpertPerLayer + routerPerLayer;
      inactive += (moe.numExperts - moe.topk) * expertPerExpert;
    } else layers += denseMlpPerLayer;
  }
  // An MTP module (DeepSeek-V3): two norms on (hidden, embedding), a 2h→h projection, one
  // transformer layer of the last layer's type, and a final norm; embedding and head are shared.
  const lastIsMoE = isMoELayer(cfg, cfg.numLayers - 1);
  const mtpLayer = attentionPerLayer + normsPerLayer
    + (lastIsMoE ? moe.numExperts * expertPerExpert + sharedExpertPerLayer + routerPerLayer : denseMlpPerLayer);
  const mtpOne = 2 * h + 2 * h * h + mtpLayer + h;
  const mtp = cfg.numMtpLayers * mtpOne;

  const total = embedding + outputLayer + layers + finalNorm;
  return {
    embedding, outputLayer, attentionPerLayer, denseMlpPerLayer, expertPerExpert, sharedExpertPerLayer,
    routerPerLayer, normsPerLayer, mtp, total,
    activated: total - embedding - inactive,
    totalWithMtp: total + mtp,
  };
}
