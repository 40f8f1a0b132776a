// Tensor executors of the MoE layer (explicit forward/backward); see docs/moe.md.
export { MoELayer } from './moe-layer.ts';
export { Router } from './router.ts';
export { GroupedExperts, siluGrad, type InitWeight } from './experts.ts';
export { SharedExpert } from './shared-expert.ts';
export { permuteTokens, permuteTokensBackward, unpermuteTokens, unpermuteTokensBackward, scatterAddRows } from './permute.ts';
