// Model configuration: one plain object, validated up front (every problem listed at once),
// plus the presets. Field names follow Megatron-Core / Hugging Face where they exist
// (see ../shared/reference/moe-semantics.md and pangu-ultra-moe.md).

export type AttentionType = 'mla' | 'gqa';
export type ScoreFunction = 'softmax' | 'sigmoid';
export type DropPolicy = 'probs' | 'position';
/** switch: per micro-batch; seq: per sequence (DeepSeek-V2/V3); global: counts accumulated over
 *  the data-parallel group and micro-batches; ep-group: counts all-reduced over the EP group (the paper's). */
export type AuxLossType = 'switch' | 'seq' | 'global' | 'ep-group';
/** pre: pre-norm only; sandwich: depth-scaled sandwich norm (DSSN), post-norm gains c/sqrt(L). */
export type NormStyle = 'pre' | 'sandwich';
/** tiny: TinyInit N(0, sqrt(1/(2·d·L))); normal: N(0, 0.02) with 0.02/sqrt(2L) on residual projections. */
export type InitMethod = 'tiny' | 'normal';

export interface AuxLossSpec {
  type: AuxLossType;
  coeff: number;
}

export interface MoEConfig {
  numExperts: number;            // E, routed experts
  topk: number;                  // k
  expertHiddenSize: number;      // moe_intermediate_size (SwiGLU)
  numSharedExperts: number;      // shared expert intermediate = numSharedExperts · expertHiddenSize
  sharedExpertGate: boolean;     // sigmoid(x·w_gate) scalar gate on the shared expert
  scoreFunction: ScoreFunction;
  preSoftmax: boolean;           // softmax before top-k (softmax path only)
  topkScalingFactor: number | null;
  numGroups: number | null;      // group-limited routing: G groups of E/G contiguous experts
  groupTopk: number | null;      // g groups kept per token
  expertBias: boolean;           // aux-loss-free balancing (selection only)
  biasUpdateRate: number;        // u in b_e += u·sign(mean(c) − c_e)
  capacityFactor: number | null; // null = dropless
  dropPolicy: DropPolicy;
  padToCapacity: boolean;
  auxLoss: AuxLossSpec[];
  zLossCoeff: number;
  inputJitterEps: number;        // 0 = off
}

export interface MLAConfig {
  qLoraRank: number | null;      // null = plain q projection
  kvLoraRank: number;
  qkNopeHeadDim: number;
  qkRopeHeadDim: number;
  vHeadDim: number;
}

export interface ModelConfig {
  name: string;
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;             // transformer layers, MTP excluded
  numDenseLayers: number;        // the first layers use a dense SwiGLU MLP
  denseIntermediateSize: number;
  numHeads: number;
  attention: AttentionType;
  numKvHeads: number;            // GQA (== numHeads for MHA); ignored by MLA
  headDim: number;               // GQA head size; ignored by MLA
  mla: MLAConfig | null;
  ropeTheta: number;
  maxSeqLen: number;
  normEps: number;
  norm: NormStyle;
  /** DSSN constants c_attn, c_mlp (post-norm gains start at c/sqrt(L)). */
  sandwichGain: { attn: number; mlp: number };
  init: InitMethod;
  embeddingStd: number;
  tieEmbeddings: boolean;
  numMtpLayers: number;
  mtpLossCoeff: number;
  dropout: number;
  moe: MoEConfig;
}

/** Deep-partial overrides for presets and CLI flags. */
export type ConfigOverrides = Partial<Omit<ModelConfig, 'moe' | 'mla'>> & {
  moe?: Partial<MoEConfig>;
  mla?: Partial<MLAConfig> | null;
};

const pangu718b: ModelConfig = {
  name: 'pangu-ultra-moe-718b',
  vocabSize: 153600,
  hiddenSize: 7680,
  numLayers: 61,
  numDenseLayers: 3,
  denseIntermediateSize: 18432,
  numHeads: 128,
  attention: 'mla',
  numKvHeads: 128,
  headDim: 128,
  mla: { qLoraRank: 1536, kvLoraRank: 512, qkNopeHeadDim: 128, qkRopeHeadDim: 64, vHeadDim: 128 },
  ropeTheta: 25_600_000,
  maxSeqLen: 131072,
  normEps: 1e-5,
  norm: 'sandwich',
  sandwichGain: { attn: 0.283, mlp: 0.432 }, // dense Pangu Ultra values; MoE values unconfirmed
  init: 'tiny',
  embeddingStd: 0.5,
  tieEmbeddings: false,
  numMtpLayers: 1,
  mtpLossCoeff: 0.3,
  dropout: 0,
  moe: {
    numExperts: 256, topk: 8, expertHiddenSize: 2048, numSharedExperts: 1, sharedExpertGate: false,
    scoreFunction: 'sigmoid', preSoftmax: false, topkScalingFactor: 2.5,
    numGroups: null, groupTopk: null, expertBias: false, biasUpdateRate: 1e-3,
    capacityFactor: null, dropPolicy: 'probs', padToCapacity: false,
    auxLoss: [{ type: 'ep-group', coeff: 1e-2 }], zLossCoeff: 0, inputJitterEps: 0,
  },
};

const deepseekV3: ModelConfig = {
  ...pangu718b,
  name: 'deepseek-v3-671b',
  vocabSize: 129280,
  hiddenSize: 7168,
  numLayers: 61,
  numDenseLayers: 3,
  denseIntermediateSize: 18432,
  ropeTheta: 10000,
  norm: 'pre',
  init: 'normal',
  embeddingStd: 0.006,
  moe: {
    ...pangu718b.moe,
    numGroups: 8, groupTopk: 4, expertBias: true,
    auxLoss: [{ type: 'seq', coeff: 1e-4 }],
  },
};

/** 256 experts top-8 like the paper, at a size that trains on 2 CPU cores. */
const tiny: ModelConfig = {
  ...pangu718b,
  name: 'tiny',
  vocabSize: 256,
  hiddenSize: 128,
  numLayers: 4,
  numDenseLayers: 1,
  denseIntermediateSize: 384,
  numHeads: 4,
  numKvHeads: 4,
  headDim: 32,
  mla: { qLoraRank: 64, kvLoraRank: 32, qkNopeHeadDim: 32, qkRopeHeadDim: 16, vHeadDim: 32 },
  ropeTheta: 10000,
  maxSeqLen: 256,
  embeddingStd: 0.5,
  numMtpLayers: 0,
  moe: {
    ...pangu718b.moe,
    expertHiddenSize: 64,
    auxLoss: [{ type: 'switch', coeff: 1e-2 }],
    zLossCoeff: 1e-3,
  },
};

const small: ModelConfig = {
  ...tiny,
  name: 'small',
  hiddenSize: 256,
  numLayers: 6,
  numDenseLayers: 1,
  denseIntermediateSize: 768,
  numHeads: 8,
  numKvHeads: 8,
  mla: { qLoraRank: 128, kvLoraRank: 64, qkNopeHeadDim: 32, qkRopeHeadDim: 16, vHeadDim: 32 },
  maxSeqLen: 512,
  moe: { ...tiny.moe, numExperts: 64, topk: 6, expertHiddenSize: 128 },
};

export const PRESETS: Record<string, ModelConfig> = {
  tiny, small, 'pangu-ultra-moe-718b': pangu718b, 'deepseek-v3-671b': deepseekV3,
};

export class ConfigError extends Error {
  constructor(readonly problems: string[], what = 'model config') {
    super(`invalid ${what} (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n  - ${problems.join('\n  - ')}`);
  }
}

/** A preset by name with overrides applied (deeply for `moe` and `mla`), validated. */
export function resolveConfig(preset: string, overrides: ConfigOverrides = {}): ModelConfig {
  const base = PRESETS[preset];
  if (!base) throw new ConfigError([`unknown preset '${preset}' (known: ${Object.keys(PRESETS).join(', ')})`]);
  const cfg: ModelConfig = {
    ...structuredClone(base),
    ...(overrides as Partial<ModelConfig>),
    moe: { ...structuredClone(base.moe), ...(overrides.moe ?? {}) },
    mla: overrides.mla === null ? null : base.mla || overrides.mla ? { ...(base.mla as MLAConfig), ...(overrides.mla ?? {}) } : null,
  };
  assertValidConfig(cfg);
  return cfg;
}

const isPosInt = (v: number) => Number.isInteger(v) && v > 0;

/** Every problem with `cfg`, empty when valid. */
export function validateConfig(cfg: ModelConfig): string[] {
  const p: string[] = [];
  const posInt = (name: string, v: number) => { if (!isPosInt(v)) p.push(`${name} must be a positive integer (got ${v})`); };
  posInt('vocabSize', cfg.vocabSize);
  posInt('hiddenSize', cfg.hiddenSize);
  posInt('numLayers', cfg.numLayers);
  posInt('numHeads', cfg.numHeads);
  posInt('maxSeqLen', cfg.maxSeqLen);
  posInt('denseIntermediateSize', cfg.denseIntermediateSize);
  if (!(Number.isInteger(cfg.numDenseLayers) && cfg.numDenseLayers >= 0 && cfg.numDenseLayers <= cfg.numLayers))
    p.push(`numDenseLayers must be an integer in [0, numLayers=${cfg.numLayers}] (got ${cfg.numDenseLayers})`);
  if (!(cfg.normEps > 0)) p.push(`normEps must be > 0 (got ${cfg.normEps})`);
  if (!(cfg.ropeTheta > 0)) p.push(`ropeTheta must be > 0 (got ${cfg.ropeTheta})`);
  if (!(cfg.dropout >= 0 && cfg.dropout < 1)) p.push(`dropout must be in [0, 1) (got ${cfg.dropout})`);
  if (!(cfg.embeddingStd > 0)) p.push(`embeddingStd must be > 0 (got ${cfg.embeddingStd})`);
  if (!(Number.isInteger(cfg.numMtpLayers) && cfg.numMtpLayers >= 0)) p.push(`numMtpLayers must be an integer >= 0 (got ${cfg.numMtpLayers})`);
  if (!['pre', 'sandwich'].includes(cfg.norm)) p.push(`norm must be 'pre' or 'sandwich' (got '${cfg.norm}')`);
  if (!['tiny', 'normal'].includes(cfg.init)) p.push(`init must be 'tiny' or 'normal' (got '${cfg.init}')`);
  if (cfg.attention === 'gqa') {
    posInt('numKvHeads', cfg.numKvHeads);
    posInt('headDim', cfg.headDim);
    if (isPosInt(cfg.numKvHeads) && cfg.numHeads % cfg.numKvHeads !== 0)
      p.push(`numHeads (${cfg.numHeads}) must be divisible by numKvHeads (${cfg.numKvHeads})`);
    if (cfg.headDim % 2 !== 0) p.push(`headDim must be even for RoPE (got ${cfg.headDim})`);
  } else if (cfg.attention === 'mla') {
    const m = cfg.mla;
    if (!m) p.push(`attention 'mla' needs an mla section`);
    else {
      if (m.qLoraRank !== null) posInt('mla.qLoraRank', m.qLoraRank);
      posInt('mla.kvLoraRank', m.kvLoraRank);
      posInt('mla.qkNopeHeadDim', m.qkNopeHeadDim);
      posInt('mla.qkRopeHeadDim', m.qkRopeHeadDim);
      posInt('mla.vHeadDim', m.vHeadDim);
      if (m.qkRopeHeadDim % 2 !== 0) p.push(`mla.qkRopeHeadDim must be even for RoPE (got ${m.qkRopeHeadDim})`);
    }
  } else p.push(`attention must be 'mla' or 'gqa' (got '${cfg.attention}')`);

  const moe = cfg.moe;
  // A fully dense model (numDenseLayers == numLayers) ignores the MoE section.
  const hasMoE = cfg.numDenseLayers !== cfg.numLayers;
  if (hasMoE) {
    posInt('moe.numExperts', moe.numExperts);
    posInt('moe.topk', moe.topk);
    posInt('moe.expertHiddenSize', moe.expertHiddenSize);
    if (!(Number.isInteger(moe.numSharedExperts) && moe.numSharedExperts >= 0))
      p.push(`moe.numSharedExperts must be an integer >= 0 (got ${moe.numSharedExperts})`);
    if (moe.topk > moe.numExperts) p.push(`moe.topk (${moe.topk}) must be <= moe.numExperts (${moe.numExperts})`);
    if (!['softmax', 'sigmoid'].includes(moe.scoreFunction)) p.push(`moe.scoreFunction must be 'softmax' or 'sigmoid' (got '${moe.scoreFunction}')`);
    if (moe.preSoftmax && moe.scoreFunction !== 'softmax') p.push(`moe.preSoftmax only applies to scoreFunction 'softmax'`);
    if (moe.expertBias && moe.scoreFunction !== 'sigmoid') p.push(`moe.expertBias needs scoreFunction 'sigmoid' (the bias only changes selection of sigmoid scores)`);
    if (moe.topkScalingFactor !== null && !(moe.topkScalingFactor > 0)) p.push(`moe.topkScalingFactor must be > 0 or null (got ${moe.topkScalingFactor})`);
    if ((moe.numGroups === null) !== (moe.groupTopk === null)) p.push(`moe.numGroups and moe.groupTopk must be set together`);
    if (moe.numGroups !== null && moe.groupTopk !== null) {
      posInt('moe.numGroups', moe.numGroups);
      posInt('moe.groupTopk', moe.groupTopk);
      if (isPosInt(moe.numGroups) && moe.numExperts % moe.numGroups !== 0)
        p.push(`moe.numExperts (${moe.numExperts}) must be divisible by moe.numGroups (${moe.numGroups})`);
      if (moe.groupTopk > moe.numGroups) p.push(`moe.groupTopk (${moe.groupTopk}) must be <= moe.numGroups (${moe.numGroups})`);
      if (moe.topk % moe.groupTopk !== 0) p.push(`moe.topk (${moe.topk}) must be divisible by moe.groupTopk (${moe.groupTopk}) (groups are scored by their top k/g experts)`);
      else if (isPosInt(moe.numGroups) && moe.topk > moe.groupTopk * (moe.numExperts / moe.numGroups))
        p.push(`group-limited top-k impossible: topk ${moe.topk} > groupTopk ${moe.groupTopk} × experts per group ${moe.numExperts / moe.numGroups}`);
    }
    if (moe.capacityFactor !== null && !(moe.capacityFactor > 0)) p.push(`moe.capacityFactor must be > 0 or null for dropless (got ${moe.capacityFactor})`);
    if (moe.padToCapacity && moe.capacityFactor === null) p.push(`moe.padToCapacity needs a capacityFactor`);
    if (!['probs', 'position'].includes(moe.dropPolicy)) p.push(`moe.dropPolicy must be 'probs' or 'position' (got '${moe.dropPolicy}')`);
    for (const a of moe.auxLoss) {
      if (!['switch', 'seq', 'global', 'ep-group'].includes(a.type)) p.push(`moe.auxLoss type must be switch|seq|global|ep-group (got '${a.type}')`);
      if (!(a.coeff >= 0)) p.push(`moe.auxLoss ${a.type} coeff must be >= 0 (got ${a.coeff})`);
    }
    if (!(moe.zLossCoeff >= 0)) p.push(`moe.zLossCoeff must be >= 0 (got ${moe.zLossCoeff})`);
    if (!(moe.biasUpdateRate >= 0)) p.push(`moe.biasUpdateRate must be >= 0 (got ${moe.biasUpdateRate})`);
    if (!(moe.inputJitterEps >= 0 && moe.inputJitterEps < 1)) p.push(`moe.inputJitterEps must be in [0, 1) (got ${moe.inputJitterEps})`);
  }
  return p;
}

export function assertValidConfig(cfg: ModelConfig): void {
  const problems = validateConfig(cfg);
  if (problems.length) throw new ConfigError(problems);
}

export const isMoELayer = (cfg: ModelConfig, layer: number) => layer >= cfg.numDenseLayers;
