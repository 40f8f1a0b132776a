// Pure routing math on host arrays (row-major [T, E]); see docs/moe.md.
export { softmaxRows, sigmoid, logSumExpRows, topkRow, topkRows, groupLimitedTopk, indicesToMap } from './topk.ts';
export { topkRouting, topkRoutingBackward, topkRoutingBackwardSparse, type TopkRouting, type ScoreOptions } from './score.ts';
export { getCapacity, applyTokenDropping, type TokenDropping } from './capacity.ts';
export {
  auxLossScores, auxLossScoresBackward, auxRoutingMap, countsPerExpert, switchLoadBalancingLoss, switchAuxLoss,
  seqAuxLoss, GlobalAuxTracker, globalAuxLoss, epGroupAuxLoss, zLoss, type AuxLossResult,
} from './aux-loss.ts';
export { updateExpertBias } from './expert-bias.ts';
export { permutePlan, permuteRows, unpermuteRows, type PermutePlan } from './permute-plan.ts';
export { routeTokens, routingBackward, tokensPerExpertOf, type RouteOptions, type RoutingPlan } from './plan.ts';
