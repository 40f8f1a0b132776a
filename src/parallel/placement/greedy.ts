// Placements without replication: the static contiguous baseline and the greedy longest-processing-time
// planner of the Pangu Ultra MoE framework (MindSpeed `expert_placement/planner.py`, pangu-ultra-moe.md §6.5):
// all devices start empty; take the heaviest remaining expert and give it to the device with the fewest
// tokens among those with a free slot; repeat. It is EPLB's balanced packing with no redundant slots.
import { balancedPacking } from './eplb.ts';
import {
  assemble, isHierarchical, layerFromSlots, PlacementError, validate,
  type LayerPlacement, type Placement, type PlacementSpec,
} from './types.ts';

/**
 * Static contiguous placement: with R = N device d holds experts [d*N/D, (d+1)*N/D) (Megatron's default
 * EP layout). Redundant slots, if any, repeat each node's own experts in order (node k's slots hold
 * experts k*N/nodes + (j mod N/nodes)), so the layout keeps groups within nodes; when N is not a multiple
 * of the node count, slot p holds expert p mod N.
 */
export function staticLayer(loads: ArrayLike<number>, spec: PlacementSpec): LayerPlacement {
  const { numExperts: N, numReplicas: R, numNodes: n } = spec;
  const perNode = N % n === 0 ? N / n : N, slotsPerNode = N % n === 0 ? R / n : R;
  const slots = Array.from({ length: R }, (_, p) => {
    const k = Math.floor(p / slotsPerNode);
    return k * perNode + ((p - k * slotsPerNode) % perNode);
  });
  return layerFromSlots(slots, N, spec.numDevices, loads);
}

export function staticPlacement(loads: ArrayLike<number>[], spec: PlacementSpec): Placement {
  validate(spec, loads);
  return assemble('static', spec, loads.map((w) => staticLayer(w, spec)));
}

/**
 * Greedy LPT for one layer (R must equal N). In hierarchical mode (groups % nodes == 0, nodes > 1) the
 * groups are first packed to nodes by the same greedy, so each group stays within a node; then each
 * node's experts are packed to its devices.
 */
export function greedyLayer(loads: ArrayLike<number>, spec: PlacementSpec): LayerPlacement {
  const { numExperts: N, numDevices: D } = spec;
  const hier = isHierarchical(spec);
  const nodes = hier ? spec.numNodes : 1, groups = hier ? spec.numGroups : 1;
  const groupSize = N / groups, devPerNode = D / nodes, S = N / D;
  const groupLoads = new Array<number>(groups).fill(0);
  for (let e = 0; e < N; e++) groupLoads[Math.floor(e / groupSize)] += loads[e];
  const groupNode = balancedPacking(groupLoads, nodes, false).pack; // [groups]
  const slots = new Array<number>(N);
  for (let node = 0; node < nodes; node++) {
    const experts: number[] = []; // ascending ids, so ties keep the lower expert first
    for (let e = 0; e < N; e++) if (groupNode[Math.floor(e / groupSize)] === node) experts.push(e);
    const packing = balancedPacking(experts.map((e) => loads[e]), devPerNode, false);
    experts.forEach((e, i) => { slots[(node * devPerNode + packing.pack[i]) * S + packing.rank[i]] = e; });
  }
  return layerFromSlots(slots, N, D, loads);
}

export function greedyPlacement(loads: ArrayLike<number>[], spec: PlacementSpec): Placement {
  validate(spec, loads);
  if (spec.numReplicas !== spec.numExperts) {
    throw new PlacementError([`the greedy solver does not replicate: numReplicas (${spec.numReplicas}) must equal numExperts (${spec.numExperts}); use 'eplb' or 'ours' for redundant slots`]);
  }
  return assemble('greedy', spec, loads.map((w) => greedyLayer(w, spec)));
}
