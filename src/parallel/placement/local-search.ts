// Our solver: EPLB (replication by water-filling, then greedy packing) followed by a local search that
// lowers the most-loaded device. Two kinds of moves, always involving a device at the maximum:
//   swap     : exchange the replicas of two slots on different devices (slot counts stay fixed);
//   transfer : a redundant slot (its expert has >= 2 replicas) is handed to another expert, which changes
//              the per-replica load of both experts (count - 1 and count + 1) on every device holding them.
// The best move by (max device load, sum of squared device loads) is applied while it lowers the max or
// keeps it and lowers the sum of squares; the sum of squares strictly decreases, so the search ends.
// In hierarchical mode moves stay inside the node of the max device, so groups never leave their node.
// Starting from EPLB's plan, the result is never worse than EPLB's max device load (tested).
import { alignToPrevious } from './migration.ts';
import { balancedPacking, eplbLayer, rebalanceLayerHierarchical, replicateExperts, type Packing } from './eplb.ts';
import {
  assemble, balance, groupsLeaveNodes, isHierarchical, layerFromSlots, validate, type LayerPlacement, type Placement, type PlacementSpec,
} from './types.ts';

export interface LocalSearchOptions {
  maxIterations?: number; // default 4 * R
  previous?: readonly number[]; // [R] slots in force now: also search from it, prefer fewer migrations
  slack?: number; // accept a max device load this much (relative) above the best to migrate less; default 0.005
}

/** Improve a copy of a slot table; returns the improved copy. */
export function localSearch(
  startSlots: readonly number[], loads: ArrayLike<number>, spec: PlacementSpec, opts: LocalSearchOptions = {},
): number[] {
  const { numExperts: N, numReplicas: R, numDevices: D } = spec;
  const S = R / D;
  const devPerNode = isHierarchical(spec) ? D / spec.numNodes : D; // move scope
  const slots = startSlots.slice();
  const count = new Array<number>(N).fill(0);
  const replicas: number[][] = Array.from({ length: N }, () => []); // [N][count] slots of each expert
  for (let p = 0; p < R; p++) { count[slots[p]]++; replicas[slots[p]].push(p); }
  const dev = (p: number) => Math.floor(p / S);
  const per = (e: number, c = count[e]) => loads[e] / c; // per-replica load
  const L = new Array<number>(D).fill(0); // [D]
  for (let p = 0; p < R; p++) L[dev(p)] += per(slots[p]);
  let sumLoad = 0;
  for (let e = 0; e < N; e++) sumLoad += loads[e];
  const tol = 1e-12 * Math.max(sumLoad, 1);
  const maxIter = opts.maxIterations ?? 4 * R;

  for (let iter = 0; iter < maxIter; iter++) {
    let M = 0;
    for (let d = 1; d < D; d++) if (L[d] > L[M]) M = d;
    const curMax = L[M];
    let curSS = 0;
    for (let d = 0; d < D; d++) curSS += L[d] * L[d];
    const order = Array.from({ length: D }, (_, d) => d).sort((a, b) => L[b] - L[a]); // devices by load, desc
    const maxExcept = (skip: (d: number) => boolean) => {
      for (const d of order) if (!skip(d)) return L[d];
      return -Infinity;
    };
    const lo = Math.floor(M / devPerNode) * devPerNode * S, hi = lo + devPerNode * S; // slot scope
    let bestMax = curMax, bestSS = curSS, apply: (() => void) | null = null;
    const consider = (newMax: number, newSS: number, fn: () => void) => {
      const better = newMax < bestMax - tol || (newMax <= bestMax + tol && newSS < bestSS - tol);
      if (better && newMax <= curMax + tol) { bestMax = newMax; bestSS = newSS; apply = fn; }
    };

    // swaps: slot p on M with slot q elsewhere in scope
    for (let p = M * S; p < (M + 1) * S; p++) {
      const a = slots[p], va = per(a);
      for (let q = lo; q < hi; q++) {
        const d = dev(q), b = slots[q];
        if (d === M || b === a) continue;
        const delta = va - per(b);
        if (delta <= tol) continue;
        const nM = L[M] - delta, nD = L[d] + delta;
        const newMax = Math.max(nM, nD, maxExcept((x) => x === M || x === d));
        consider(newMax, curSS - L[M] ** 2 - L[d] ** 2 + nM ** 2 + nD ** 2, () => {
          slots[p] = b; slots[q] = a;
          replicas[a][replicas[a].indexOf(p)] = q; replicas[b][replicas[b].indexOf(q)] = p;
          L[M] = nM; L[d] = nD;
        });
      }
    }

    // transfers: slot q (expert y, count >= 2) is given to expert x
    const transfer = (q: number, x: number) => {
      const y = slots[q];
      if (x === y || count[y] < 2) return;
      const delta = new Map<number, number>();
      const add = (d: number, v: number) => delta.set(d, (delta.get(d) ?? 0) + v);
      const dx = per(x, count[x] + 1) - per(x), dy = per(y, count[y] - 1) - per(y);
      for (const s of replicas[x]) add(dev(s), dx);
      for (const s of replicas[y]) if (s !== q) add(dev(s), dy);
      add(dev(q), per(x, count[x] + 1) - per(y));
      let newMax = maxExcept((d) => delta.has(d)), newSS = curSS;
      for (const [d, v] of delta) { newMax = Math.max(newMax, L[d] + v); newSS += (L[d] + v) ** 2 - L[d] ** 2; }
      consider(newMax, newSS, () => {
        for (const [d, v] of delta) L[d] += v;
        replicas[y].splice(replicas[y].indexOf(q), 1); replicas[x].push(q);
        count[y]--; count[x]++; slots[q] = x;
      });
    };
    const onMax = new Set<number>();
    for (let p = M * S; p < (M + 1) * S; p++) onMax.add(slots[p]);
    for (const x of onMax) for (let q = lo; q < hi; q++) transfer(q, x); // more replicas for an expert on M
    const scopeExperts = new Set<number>();
    for (let q = lo; q < hi; q++) scopeExperts.add(slots[q]);
    for (let q = M * S; q < (M + 1) * S; q++) for (const x of scopeExperts) transfer(q, x); // lighter replica on M

    if (!apply) break;
    (apply as () => void)();
  }
  return slots;
}

/**
 * Hierarchical mode: a groups-to-nodes assignment better than EPLB's step 1. EPLB packs groups by total
 * load, but a node's device max also depends on whether its R/nodes slots can replicate its hot experts.
 * So each node is scored by the max device load EPLB's steps 2-3 reach on it, and groups are swapped
 * between the worst node and another one while that lowers the worse of the two scores.
 */
export function balanceGroupsToNodes(loads: ArrayLike<number>, spec: PlacementSpec): Packing {
  const { numGroups: G, numNodes: n, numReplicas: R, numDevices: D } = spec;
  const groupSize = loads.length / G, perNode = G / n;
  const g = new Array<number>(G).fill(0); // [G] group loads
  for (let e = 0; e < loads.length; e++) g[Math.floor(e / groupSize)] += loads[e];
  const pack = balancedPacking(g, n, false).pack.slice();
  const score = (k: number) => { // max device load of node k under EPLB steps 2-3
    const w: number[] = [];
    for (let a = 0; a < G; a++) if (pack[a] === k) for (let i = 0; i < groupSize; i++) w.push(loads[a * groupSize + i]);
    const rep = replicateExperts(w, R / n, false);
    const perReplica = rep.physicalToLogical.map((m) => w[m] / rep.logicalCount[m]);
    const { pack: dev } = balancedPacking(perReplica, D / n, false);
    const sums = new Array<number>(D / n).fill(0);
    dev.forEach((d, q) => { sums[d] += perReplica[q]; });
    return Math.max(...sums);
  };
  const cost = Array.from({ length: n }, (_, k) => score(k));
  for (let iter = 0; iter < 4 * G * G; iter++) {
    let M = 0;
    for (let k = 1; k < n; k++) if (cost[k] > cost[M]) M = k;
    let best: [number, number, number, number] | null = null; // [a, b, costM, costK]
    let bestPeak = cost[M] * (1 - 1e-12);
    for (let a = 0; a < G; a++) {
      if (pack[a] !== M) continue;
      for (let b = 0; b < G; b++) {
        const k = pack[b];
        if (k === M) continue;
        pack[a] = k; pack[b] = M;
        const cM = score(M), cK = score(k);
        pack[a] = M; pack[b] = k;
        if (Math.max(cM, cK) < bestPeak) { bestPeak = Math.max(cM, cK); best = [a, b, cM, cK]; }
      }
    }
    if (!best) break;
    const [a, b, cM, cK] = best, k = pack[b];
    pack[a] = k; pack[b] = M; cost[M] = cM; cost[k] = cK;
  }
  const rank = new Array<number>(G).fill(0), filled = new Array<number>(n).fill(0);
  pack.forEach((k, i) => { rank[i] = filled[k]++; });
  if (filled.some((f) => f !== perNode)) throw new Error('balanceGroupsToNodes: unbalanced group counts'); // swaps keep counts
  return { pack, rank };
}

/**
 * One layer of our solver: local search from EPLB's plan and, in hierarchical mode, also from EPLB with
 * rebalanced groups-to-nodes; the lowest max device load wins (so never worse than EPLB). With
 * `previous` (re-placement during training) the current plan is a start too, and among the results
 * within `slack` of the best max the one that changes the fewest slots (after alignment) wins.
 */
export function oursLayer(loads: ArrayLike<number>, spec: PlacementSpec, opts: LocalSearchOptions = {}): LayerPlacement {
  const starts = [eplbLayer(loads, spec).physicalToLogical];
  if (isHierarchical(spec) && spec.numNodes > 1) {
    const groups = balanceGroupsToNodes(loads, spec);
    starts.push(rebalanceLayerHierarchical(loads, spec.numReplicas, spec.numGroups, spec.numNodes, spec.numDevices, true, groups).physicalToLogical);
  }
  const prev = opts.previous;
  // the plan in force is a start only if it is a valid plan for this spec (groups within nodes)
  if (prev && prev.length === spec.numReplicas && !groupsLeaveNodes(prev, spec)) starts.push(prev.slice());
  const results = starts.map((start) => {
    let slots = localSearch(start, loads, spec, opts);
    if (prev) slots = alignToPrevious(prev, slots, spec);
    const max = balance(layerFromSlots(slots, spec.numExperts, spec.numDevices, loads).deviceLoads).max;
    const moved = prev ? slots.reduce((n, e, p) => n + (e === prev[p] ? 0 : 1), 0) : 0;
    return { slots, max, moved };
  });
  const bestMax = Math.min(...results.map((r) => r.max));
  const slack = prev ? opts.slack ?? 0.005 : 0;
  const ok = results.filter((r) => r.max <= bestMax || r.max - bestMax <= slack * bestMax); // never empty
  const pick = ok.reduce((a, b) => (b.moved < a.moved || (b.moved === a.moved && b.max < a.max) ? b : a));
  return layerFromSlots(pick.slots, spec.numExperts, spec.numDevices, loads);
}

export function oursPlacement(loads: ArrayLike<number>[], spec: PlacementSpec, opts: LocalSearchOptions = {}): Placement {
  validate(spec, loads);
  return assemble('ours', spec, loads.map((w) => oursLayer(w, spec, opts)));
}
