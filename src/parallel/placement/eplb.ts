// Exact port of deepseek-ai/EPLB `eplb.py` (moe-semantics.md §12), one layer at a time (EPLB's rows are
// independent). Arithmetic is rounded to float32 like torch's `weight.float()`, so ties and near-ties
// resolve as in the reference. Tie rules, spelled out because torch's sort is not stable:
//   - items are visited in descending weight, lower index first among equals;
//   - an item goes to the lightest non-full pack, lowest pack id among equals (Python `min` keeps the first);
//   - a redundant slot goes to argmax load/count, lowest expert id among equals (`torch.max` = first maximal).
import {
  assemble, isHierarchical, layerFromSlots, validate, type LayerPlacement, type Placement, type PlacementSpec,
} from './types.ts';

const f32 = Math.fround;
const id = (x: number) => x;

export interface Packing {
  pack: number[]; // [n] pack of each item
  rank: number[]; // [n] arrival order of the item within its pack
}

/** Items in descending weight; equal weights keep ascending index. */
export function descendingOrder(weights: ArrayLike<number>): number[] {
  const idx = Array.from({ length: weights.length }, (_, i) => i);
  return idx.sort((a, b) => weights[b] - weights[a] || a - b);
}

/**
 * EPLB `balanced_packing`: n items into numPacks packs of exactly n/numPacks items each, greedily
 * (heaviest item first into the lightest non-full pack). `float32` rounds pack sums like torch.
 */
export function balancedPacking(weights: ArrayLike<number>, numPacks: number, float32 = true): Packing {
  const n = weights.length;
  if (n % numPacks !== 0) throw new Error(`balancedPacking: ${n} items do not split into ${numPacks} equal packs`);
  const perPack = n / numPacks;
  // identity, without sorting, exactly as the reference does
  if (perPack === 1) return { pack: Array.from({ length: n }, (_, i) => i), rank: new Array<number>(n).fill(0) };
  const round = float32 ? f32 : id;
  const pack = new Array<number>(n).fill(-1), rank = new Array<number>(n).fill(-1);
  const packWeight = new Array<number>(numPacks).fill(0), packItems = new Array<number>(numPacks).fill(0);
  for (const item of descendingOrder(weights)) {
    let best = -1;
    for (let k = 0; k < numPacks; k++) {
      if (packItems[k] < perPack && (best < 0 || packWeight[k] < packWeight[best])) best = k;
    }
    pack[item] = best;
    rank[item] = packItems[best]++;
    packWeight[best] = round(packWeight[best] + weights[item]);
  }
  return { pack, rank };
}

export interface Replication {
  physicalToLogical: number[]; // [numPhysical]
  rank: number[]; // [numPhysical] replica rank of each slot
  logicalCount: number[]; // [numLogical]
}

/** EPLB `replicate_experts`: slot i < N holds expert i; each extra slot goes to argmax load/count. */
export function replicateExperts(weights: ArrayLike<number>, numPhysical: number, float32 = true): Replication {
  const n = weights.length;
  if (numPhysical < n) throw new Error(`replicateExperts: ${numPhysical} slots < ${n} experts`);
  const round = float32 ? f32 : id;
  const physicalToLogical = Array.from({ length: numPhysical }, (_, i) => (i < n ? i : -1));
  const rank = new Array<number>(numPhysical).fill(0);
  const logicalCount = new Array<number>(n).fill(1);
  for (let i = n; i < numPhysical; i++) {
    let best = 0, bestV = -Infinity;
    for (let e = 0; e < n; e++) {
      const v = round(round(weights[e]) / logicalCount[e]);
      if (v > bestV) { bestV = v; best = e; }
    }
    physicalToLogical[i] = best;
    rank[i] = logicalCount[best]++;
  }
  return { physicalToLogical, rank, logicalCount };
}

/**
 * EPLB `rebalance_experts_hierarchical` for one layer; global policy = (groups 1, nodes 1).
 * `groupsToNodes` replaces step 1 (used by our solver to try a better group packing; not part of EPLB).
 */
export function rebalanceLayerHierarchical(
  weights: ArrayLike<number>, numPhysical: number, numGroups: number, numNodes: number, numDevices: number,
  float32 = true, groupsToNodes?: Packing,
): { physicalToLogical: number[]; rank: number[]; logicalCount: number[] } {
  const round = float32 ? f32 : id;
  const N = weights.length;
  const groupSize = N / numGroups, groupsPerNode = numGroups / numNodes;
  const expertsPerNode = N / numNodes, slotsPerNode = numPhysical / numNodes;
  const devicesPerNode = numDevices / numNodes, slotsPerDevice = numPhysical / numDevices;

  // Step 1: pack groups to nodes.
  const groupLoads = new Array<number>(numGroups).fill(0); // [G]
  for (let e = 0; e < N; e++) {
    const g = Math.floor(e / groupSize);
    groupLoads[g] = round(groupLoads[g] + round(weights[e]));
  }
  const groupPack = groupsToNodes ?? balancedPacking(groupLoads, numNodes, float32);
  // mlog: experts relabeled so node k owns [k*N/n, (k+1)*N/n)
  const mlog2log = new Array<number>(N);
  for (let e = 0; e < N; e++) {
    const g = Math.floor(e / groupSize);
    mlog2log[(groupPack.pack[g] * groupsPerNode + groupPack.rank[g]) * groupSize + (e % groupSize)] = e;
  }

  const physicalToLogical = new Array<number>(numPhysical), rank = new Array<number>(numPhysical);
  const logicalCount = new Array<number>(N);
  for (let node = 0; node < numNodes; node++) {
    // Step 2: redundant experts within the node.
    const nodeLoads = Array.from({ length: expertsPerNode }, (_, i) => weights[mlog2log[node * expertsPerNode + i]]);
    const rep = replicateExperts(nodeLoads, slotsPerNode, float32);
    // Step 3: pack the node's replicas (load / count each) to its devices.
    const perReplica = rep.physicalToLogical.map((m) => round(round(nodeLoads[m]) / rep.logicalCount[m]));
    const devPack = balancedPacking(perReplica, devicesPerNode, float32);
    for (let q = 0; q < slotsPerNode; q++) {
      const slot = node * slotsPerNode + devPack.pack[q] * slotsPerDevice + devPack.rank[q];
      physicalToLogical[slot] = mlog2log[node * expertsPerNode + rep.physicalToLogical[q]];
      rank[slot] = rep.rank[q];
    }
    for (let i = 0; i < expertsPerNode; i++) logicalCount[mlog2log[node * expertsPerNode + i]] = rep.logicalCount[i];
  }
  return { physicalToLogical, rank, logicalCount };
}

/** One layer of EPLB `rebalance_experts` as a LayerPlacement (device loads in float64). */
export function eplbLayer(weights: ArrayLike<number>, spec: PlacementSpec): LayerPlacement {
  const h = isHierarchical(spec);
  const r = rebalanceLayerHierarchical(
    weights, spec.numReplicas, h ? spec.numGroups : 1, h ? spec.numNodes : 1, spec.numDevices,
  );
  return layerFromSlots(r.physicalToLogical, spec.numExperts, spec.numDevices, weights, r.rank);
}

/**
 * EPLB `rebalance_experts`: loads [L, N] -> physicalToLogical [L, R], logicalToPhysical [L, N, maxCount],
 * logicalCount [L, N]. Hierarchical when numGroups % numNodes == 0, else global.
 */
export function rebalanceExperts(loads: ArrayLike<number>[], spec: PlacementSpec): Placement {
  validate(spec, loads);
  return assemble('eplb', spec, loads.map((w) => eplbLayer(w, spec)));
}
