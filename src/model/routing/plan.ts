// One router call on the host, end to end (moe-semantics §1): logits [T, E] → score function and
// top-k → capacity dropping/padding → aux + z losses (training only; aux-fused.ts) → permutation plan. Plus the
// backward: gradient w.r.t. the permuted probs → dlogits (selected scores only) + scale·∂(aux+z)/∂logits.
// This is the whole routing decision of a MoE layer; the tensor executor (moe/router.ts) wraps it.
import type { MoEConfig } from '../config.ts';
import { topkRouting, topkRoutingBackwardSparse, lazyField, type TopkRouting } from './score.ts';
import { applyTokenDropping } from './capacity.ts';
import { permutePlan, permutePlanFromTopk, type PermutePlan } from './permute-plan.ts';
import { zLoss, type GlobalAuxTracker } from './aux-loss.ts';
import { fusedAuxLosses, sigmoidWithZLoss } from './aux-fused.ts';

export interface RouteOptions {
  /** Aux and z losses are built only in training (Megatron: grad enabled). */
  training: boolean;
  /** Expert bias [E] (sigmoid path): selection only. */
  expertBias?: ArrayLike<number> | null;
  /** Tokens per sequence for the 'seq' aux loss (t = b·S + s); default T (one sequence). */
  seqLen?: number;
  /** Running counts for the 'global' aux loss. */
  globalTracker?: GlobalAuxTracker | null;
  /** Add this call's counts to the tracker (false on a recompute replay: each micro-batch counts once). */
  updateGlobalTracker?: boolean;
  /** Data-parallel group size of the 'global' loss (T_tot = T·groupSize). */
  globalGroupSize?: number;
  /** The EP group's aux-map counts (own included) for 'ep-group'; default [own] (group of one). */
  epGroupCounts?: ((localCounts: Float64Array) => Float64Array[]) | null;
}

export interface RoutingPlan {
  T: number; E: number; k: number;
  /** The router logits this plan was made from (the caller's Float32Array, not copied). [T, E] */
  logits: Float32Array;
  routing: TopkRouting;
  /** null when dropless. */
  capacity: number | null;
  droppedAssignments: number;
  /** Final probs and map, after dropping/padding (dropless: built on first read). [T, E] */
  probs: Float64Array;
  routingMap: Uint8Array;
  permute: PermutePlan;
  /** Aux/z values by type, already times coeff ({} in eval). */
  auxLosses: Record<string, number>;
  /** Σ ∂(aux + z)/∂logits, unscaled (null in eval or without losses). [T, E] */
  auxDLogits: Float64Array | null;
}

export function routeTokens(logits: ArrayLike<number>, T: number, E: number, moe: MoEConfig, opts: RouteOptions): RoutingPlan {
  const k = moe.topk;
  const wantAux = opts.training && moe.auxLoss.some((a) => a.coeff > 0), wantZ = opts.training && moe.zLossCoeff > 0;
  const auxDLogits = wantAux || wantZ ? new Float64Array(T * E) : null;
  const auxLosses: Record<string, number> = {};
  // sigmoid + z-loss: one exp per logit serves both (the z gradient goes in first; the sum is the same)
  let scores: Float64Array | null = null, z: number | null = null;
  if (wantZ && moe.scoreFunction === 'sigmoid') ({ scores, z } = sigmoidWithZLoss(logits, T, E, moe.zLossCoeff, auxDLogits!));
  const routing = topkRouting(logits, T, E, moe, opts.expertBias ?? null, scores);
  if (wantAux) {
    Object.assign(auxLosses, fusedAuxLosses(logits, routing, moe, {
      ...opts, selectionModified: moe.numGroups !== null || (moe.scoreFunction === 'sigmoid' && !!opts.expertBias),
    }, auxDLogits!));
  }
  if (wantZ) auxLosses.z = z ?? zLoss(logits, T, E, moe.zLossCoeff, auxDLogits!).value;
  const logits32 = logits instanceof Float32Array ? logits : new Float32Array(logits);
  if (moe.capacityFactor === null) {
    // dropless: the final map is the selection; plan from [T, k], dense probs/map only if someone reads them
    const plan = { T, E, k, logits: logits32, routing, capacity: null, droppedAssignments: 0,
      permute: permutePlanFromTopk(routing.topkIdx, routing.topkWeights, moe.topkScalingFactor ?? 1, T, E, k), auxLosses, auxDLogits } as unknown as RoutingPlan;
    lazyField(plan, 'probs', () => routing.probs);
    lazyField(plan, 'routingMap', () => routing.routingMap);
    return plan;
  }
  const d = applyTokenDropping(routing.probs, routing.routingMap, T, E, k, moe.capacityFactor, moe.dropPolicy, moe.padToCapacity);
  return { T, E, k, logits: logits32, routing, capacity: d.capacity, droppedAssignments: d.droppedAssignments, probs: d.probs, routingMap: d.routingMap,
    permute: permutePlan(d.routingMap, d.probs, T, E), auxLosses, auxDLogits };
}

/**
 * dlogits [T, E] (float32, ready for a tensor) from ∂L/∂permutedProbs [N] plus auxScale·∂(aux+z)/∂logits
 * (auxScale = 1/M). Padding rows and dropped pairs never reach the selected scores.
 */
export function routingBackward(plan: RoutingPlan, dPermutedProbs: ArrayLike<number>, auxScale: number): Float32Array {
  const { T, E, k } = plan;
  const { topkIdx } = plan.routing;
  const { sortedIndices, expertOfRow, numRows } = plan.permute;
  const dTopk = new Float64Array(T * k);                    // ∂L/∂(selected probs) [T, k]
  for (let r = 0; r < numRows; r++) {
    const t = sortedIndices[r], e = expertOfRow[r];
    for (let j = 0; j < k; j++) if (topkIdx[t * k + j] === e) { dTopk[t * k + j] += dPermutedProbs[r]; break; }
  }
  const dlogits = new Float32Array(T * E);
  if (plan.auxDLogits && auxScale !== 0) for (let i = 0; i < T * E; i++) dlogits[i] = auxScale * plan.auxDLogits[i];
  return topkRoutingBackwardSparse(plan.routing, dTopk, dlogits);
}

/** Counts of the final map (what the experts process; includes padding rows). [E] */
export function tokensPerExpertOf(plan: RoutingPlan): Float64Array {
  return Float64Array.from(plan.permute.tokensPerExpert);
}
