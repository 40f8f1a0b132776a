// ultramoe public API: import from 'ultramoe' (this file) rather than deep paths.
// Sections: backend, routing (pure host math), MoE executors, model (other modules), others.
// The lead assembles the rest (train, parallel, device, sim) into the sections marked below.

// ── backend ──────────────────────────────────────────────────────────────────────────────────
export { tf, initBackend, type BackendName } from './backend/tf.ts';
export { groupedMatMul, groupedMatMulTransposed, groupedWeightGrad } from './backend/grouped.ts';

// ── routing: pure functions on host arrays, row-major [T, E] (docs/moe.md) ─────────────────────
export {
  softmaxRows, sigmoid, logSumExpRows, topkRow, topkRows, groupLimitedTopk, indicesToMap,
  topkRouting, topkRoutingBackward, topkRoutingBackwardSparse, type TopkRouting, type ScoreOptions,
  getCapacity, applyTokenDropping, type TokenDropping,
  auxLossScores, auxLossScoresBackward, auxRoutingMap, countsPerExpert, switchLoadBalancingLoss, switchAuxLoss,
  seqAuxLoss, GlobalAuxTracker, globalAuxLoss, epGroupAuxLoss, zLoss, type AuxLossResult,
  updateExpertBias,
  permutePlan, permuteRows, unpermuteRows, type PermutePlan,
  routeTokens, routingBackward, tokensPerExpertOf, type RouteOptions, type RoutingPlan,
} from './model/routing/index.ts';

// ── MoE executors: tensors, explicit forward/backward ─────────────────────────────────────────
export {
  MoELayer, Router, GroupedExperts, SharedExpert, siluGrad,
  permuteTokens, permuteTokensBackward, unpermuteTokens, unpermuteTokensBackward, scatterAddRows,
} from './model/moe/index.ts';
export {
  referenceMoELayer, referenceProbs, referenceAux, referenceExperts, referenceShared, permutationMatrix,
  type ReferenceWeights, type ReferenceOptions,
} from './model/moe/reference.ts';

// ── model: configuration, module contract, saved activations ──────────────────────────────────
export * from './model/config.ts';
export { ParamStore, GradStore, defaultContext, type ParamMeta, type RouterStats, type ForwardContext, type Module } from './model/module.ts';
export { SavedActivations, type SavedInfo, type SavedState, type Restorer } from './model/saved.ts';
export { countParams, attentionParams, type ParamCounts } from './model/params-count.ts';

// ── model: the other engineers' modules (dense blocks, attention, GPT) ────────────────────────
export { MoEGPT, type MoEGPTOptions, type LossReport, type SavedReportEntry } from './model/gpt.ts';
export { TransformerBlock, type MoELike, type MoEFactory } from './model/block.ts';
export { defaultMoEFactory } from './model/moe-factory.ts';
export { denseMoEStandIn } from './model/moe-standin.ts';
export { GQAttention } from './model/attention-gqa.ts';
export { MLAttention } from './model/attention-mla.ts';
export { SwiGLUMLP } from './model/mlp.ts';
export { RMSNorm } from './model/norm.ts';
export { Embedding } from './model/embedding.ts';
export { OutputHead } from './model/head.ts';
export { CrossEntropy } from './model/cross-entropy.ts';
export { MTPModule } from './model/mtp.ts';
export { makeInitWeight, initStd, type InitWeight, type InitRole } from './model/init.ts';
export { modelFlops, layerFlops, type FlopsOptions, type FlopsBreakdown } from './model/flops.ts';

// ── train / parallel / device / sim: assembled by the lead ───────────────────────────────────
// Namespaced so that similarly named helpers of different layers do not collide.
export * as device from './device/index.ts';
export * as parallel from './parallel/index.ts';
export * as placement from './parallel/placement/index.ts';
export * as overlap from './parallel/overlap/index.ts';
export { simulate } from './sim/cost-model.ts';
export { runSearch } from './sim/search.ts';
export { planFromFlags, simulatePlan } from './sim/plan.ts';
export { exportArgs, formatExport } from './sim/export.ts';
export { paperProgression } from './sim/paper.ts';
export { Trainer } from './train/trainer.ts';
export { AdamW, getLr, globalGradNorm } from './train/optimizer.ts';
export { saveCheckpoint, loadCheckpoint, CheckpointError } from './train/checkpoint.ts';
export { ByteTokenizer, BpeTokenizer, trainBpe } from './train/tokenizer.ts';
export { encodeSafetensors, decodeSafetensors } from './train/safetensors.ts';
export { runTraining } from './train/run.ts';
