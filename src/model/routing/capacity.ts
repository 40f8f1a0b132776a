// Expert capacity and token dropping (Megatron `get_capacity`, `apply_router_token_dropping`,
// moe-semantics §4). Pure host functions on dense [T, E] probs and 0/1 routing maps.
//
//   capacity = ceil((T·k / E) · capacityFactor)           nothing is dropped when capacity > T
//   dropPolicy 'probs':    each expert keeps its `capacity` highest-prob tokens (ties → lower token)
//   dropPolicy 'position': each expert keeps its first `capacity` routed tokens
//   padToCapacity:         every expert gets exactly `capacity` rows; padding = lowest non-kept tokens, prob 0
import type { DropPolicy } from '../config.ts';

export function getCapacity(numTokens: number, numExperts: number, topk: number, capacityFactor: number, minCapacity = 0): number {
  const capacity = Math.ceil(((numTokens * topk) / numExperts) * capacityFactor);
  return Math.max(capacity, minCapacity);
}

export interface TokenDropping {
  capacity: number;
  /** The `capacity` rows each expert may take (all ones when capacity > T). [T, E] */
  capacityMask: Uint8Array;
  /** Final map: routingMap ∧ capacityMask, or capacityMask itself when padding. [T, E] */
  routingMap: Uint8Array;
  /** probs · routingMap (padding rows carry 0). [T, E] */
  probs: Float64Array;
  /** Routed (token, expert) pairs removed by capacity. */
  droppedAssignments: number;
}

/** Apply capacity to dense probs [T, E] and routingMap [T, E]. */
export function applyTokenDropping(probs: ArrayLike<number>, routingMap: Uint8Array, T: number, E: number, topk: number,
  capacityFactor: number, dropPolicy: DropPolicy, padToCapacity: boolean): TokenDropping {
  const capacity = getCapacity(T, E, topk, capacityFactor);
  const capacityMask = new Uint8Array(T * E);
  if (capacity > T) capacityMask.fill(1);
  else {
    const routed: number[] = [];
    for (let e = 0; e < E; e++) {
      // candidate order of topk over the column (largest first, ties → lower token):
      // 'probs': routed tokens with p > 0 by p desc, then every p = 0 token by index;
      // 'position' (topk over the 0/1 column): routed tokens by index, then the others by index.
      routed.length = 0;
      for (let t = 0; t < T; t++) {
        const i = t * E + e;
        if (routingMap[i] && (dropPolicy === 'position' || probs[i] > 0)) routed.push(t);
      }
      if (dropPolicy === 'probs') routed.sort((a, b) => probs[b * E + e] - probs[a * E + e] || a - b);
      let kept = 0;
      for (; kept < routed.length && kept < capacity; kept++) capacityMask[routed[kept] * E + e] = 1;
      for (let t = 0; t < T && kept < capacity; t++) {
        const i = t * E + e;
        if (capacityMask[i]) continue;
        if (dropPolicy === 'position' ? routingMap[i] : probs[i] > 0) continue; // already ranked above
        capacityMask[i] = 1;
        kept++;
      }
    }
  }
  const finalMap = new Uint8Array(T * E);
  const finalProbs = new Float64Array(T * E);
  let dropped = 0;
  for (let i = 0; i < T * E; i++) {
    const keep = padToCapacity ? capacityMask[i] : routingMap[i] & capacityMask[i];
    finalMap[i] = keep;
    if (keep) finalProbs[i] = probs[i];
    if (routingMap[i] && !capacityMask[i]) dropped++;
  }
  return { capacity, capacityMask, routingMap: finalMap, probs: finalProbs, droppedAssignments: dropped };
}
