// Placement plans as plain data, the problem spec, its validation, and the device-load metrics every
// solver and the load tracker share. Vocabulary follows deepseek-ai/EPLB and vLLM:
//   logical expert e  in [0, N)   : an expert of the model (router output id)
//   physical slot  p  in [0, R)   : one expert replica; slot p lives on device floor(p / (R/D))
//   device         d  in [0, D)   : one EP rank; device d lives on node floor(d / (D/nodes))
// Load model: a logical expert's tokens split evenly over its replicas (what `replica = pos % count`
// does on average), so device load = sum over its slots of load[e] / logicalCount[e].

export type SolverName = 'static' | 'greedy' | 'eplb' | 'ours';

/** Shape of the cluster and of the expert table, identical for every MoE layer. */
export interface PlacementSpec {
  numExperts: number; // N logical experts per layer
  numReplicas: number; // R physical expert slots per layer (R >= N; R - N redundant slots)
  numDevices: number; // D EP ranks; each holds R/D slots
  numNodes: number; // nodes; each holds D/nodes devices
  numGroups: number; // expert groups (contiguous blocks of N/groups experts); 1 = no grouping
}

/** The placement of one MoE layer. */
export interface LayerPlacement {
  physicalToLogical: number[]; // [R] logical expert held by each physical slot
  logicalCount: number[]; // [N] replicas per logical expert (>= 1, sums to R)
  logicalToPhysical: number[][]; // [N][maxCount] physical slot of replica rank r, padded with -1
  deviceLoads: number[]; // [D] predicted device loads for the loads the plan was solved for
}

/** A placement for every MoE layer, plus the spec it was solved for. */
export interface Placement {
  solver: SolverName;
  spec: PlacementSpec;
  hierarchical: boolean; // groups packed to nodes and replicas kept within a node
  slotsPerDevice: number; // R / D
  maxCount: number; // max over layers and experts of logicalCount (width of logicalToPhysical)
  layers: LayerPlacement[];
}

export class PlacementError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid placement input:\n  - ${problems.join('\n  - ')}`);
  }
}

const isPosInt = (x: number) => Number.isInteger(x) && x > 0;

/** Every problem with a spec (empty when valid). */
export function specProblems(s: PlacementSpec): string[] {
  const p: string[] = [];
  for (const k of ['numExperts', 'numReplicas', 'numDevices', 'numNodes', 'numGroups'] as const) {
    if (!isPosInt(s[k])) p.push(`${k} must be a positive integer (got ${s[k]})`);
  }
  if (p.length) return p;
  if (s.numReplicas < s.numExperts) p.push(`numReplicas (${s.numReplicas}) must be >= numExperts (${s.numExperts})`);
  if (s.numReplicas % s.numDevices) p.push(`numReplicas (${s.numReplicas}) must be a multiple of numDevices (${s.numDevices})`);
  if (s.numDevices % s.numNodes) p.push(`numDevices (${s.numDevices}) must be a multiple of numNodes (${s.numNodes})`);
  if (s.numExperts % s.numGroups) p.push(`numExperts (${s.numExperts}) must be a multiple of numGroups (${s.numGroups})`);
  return p;
}

/** Every problem with a [L, N] load table against a spec. */
export function loadProblems(loads: ArrayLike<number>[], numExperts: number): string[] {
  const p: string[] = [];
  if (loads.length === 0) p.push('loads must have at least one layer row');
  loads.forEach((row, l) => {
    if (row.length !== numExperts) p.push(`loads[${l}] has ${row.length} entries, expected ${numExperts}`);
    for (let e = 0; e < row.length; e++) {
      const v = row[e];
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
        p.push(`loads[${l}][${e}] must be a finite non-negative number (got ${v})`);
        break; // one message per row is enough
      }
    }
  });
  return p;
}

/** Throw one PlacementError listing every problem with the spec and the loads. */
export function validate(spec: PlacementSpec, loads: ArrayLike<number>[]): void {
  const p = specProblems(spec);
  if (!p.length) p.push(...loadProblems(loads, spec.numExperts));
  if (p.length) throw new PlacementError(p);
}

/** EPLB's policy switch: hierarchical when the groups can be split evenly over the nodes. */
export const isHierarchical = (s: PlacementSpec) => s.numGroups % s.numNodes === 0;

export const deviceOfSlot = (p: number, slotsPerDevice: number) => Math.floor(p / slotsPerDevice);

/** [D] device loads of a slot table under `loads`, with the even-split-over-replicas model. */
export function deviceLoads(physicalToLogical: ArrayLike<number>, loads: ArrayLike<number>, numDevices: number): number[] {
  const R = physicalToLogical.length;
  const S = R / numDevices;
  const count = new Array<number>(loads.length).fill(0);
  for (let p = 0; p < R; p++) count[physicalToLogical[p]]++;
  const out = new Array<number>(numDevices).fill(0);
  for (let p = 0; p < R; p++) {
    const e = physicalToLogical[p];
    out[Math.floor(p / S)] += loads[e] / count[e];
  }
  return out;
}

export interface Balance { max: number; mean: number; maxOverMean: number; cv: number }

/** max, mean, max/mean and coefficient of variation (population std / mean) of device loads. */
export function balance(devLoads: ArrayLike<number>): Balance {
  const n = devLoads.length;
  let sum = 0, max = -Infinity;
  for (let i = 0; i < n; i++) { sum += devLoads[i]; max = Math.max(max, devLoads[i]); }
  const mean = sum / n;
  let ss = 0;
  for (let i = 0; i < n; i++) ss += (devLoads[i] - mean) ** 2;
  const std = Math.sqrt(ss / n);
  return { max, mean, maxOverMean: mean > 0 ? max / mean : 1, cv: mean > 0 ? std / mean : 0 };
}

/**
 * Build a LayerPlacement from a slot table. `replicaRank[p]` orders the replicas of an expert in
 * logicalToPhysical (EPLB's phyrank); without it replicas are ranked by ascending slot id.
 */
export function layerFromSlots(
  physicalToLogical: number[], numExperts: number, numDevices: number, loads: ArrayLike<number>,
  replicaRank?: number[],
): LayerPlacement {
  const R = physicalToLogical.length;
  const logicalCount = new Array<number>(numExperts).fill(0);
  for (let p = 0; p < R; p++) logicalCount[physicalToLogical[p]]++;
  const width = Math.max(...logicalCount);
  const logicalToPhysical = logicalCount.map(() => new Array<number>(width).fill(-1));
  const next = new Array<number>(numExperts).fill(0);
  for (let p = 0; p < R; p++) {
    const e = physicalToLogical[p];
    const r = replicaRank ? replicaRank[p] : next[e]++;
    logicalToPhysical[e][r] = p;
  }
  return {
    physicalToLogical, logicalCount, logicalToPhysical,
    deviceLoads: deviceLoads(physicalToLogical, loads, numDevices),
  };
}

/** Pad every layer's logicalToPhysical to the widest one, like EPLB's [L, N, max(logcnt)]. */
export function assemble(solver: SolverName, spec: PlacementSpec, layers: LayerPlacement[]): Placement {
  const maxCount = Math.max(1, ...layers.flatMap((l) => l.logicalCount));
  for (const l of layers) for (const row of l.logicalToPhysical) while (row.length < maxCount) row.push(-1);
  return {
    solver, spec, hierarchical: isHierarchical(spec), slotsPerDevice: spec.numReplicas / spec.numDevices,
    maxCount, layers,
  };
}

/** True when, in hierarchical mode, some expert group has slots on more than one node. */
export function groupsLeaveNodes(physicalToLogical: ArrayLike<number>, spec: PlacementSpec): boolean {
  if (!isHierarchical(spec)) return false;
  const S = physicalToLogical.length / spec.numDevices, devPerNode = spec.numDevices / spec.numNodes;
  const groupSize = spec.numExperts / spec.numGroups;
  const nodeOfGroup = new Map<number, number>();
  for (let p = 0; p < physicalToLogical.length; p++) {
    const g = Math.floor(physicalToLogical[p] / groupSize), node = Math.floor(Math.floor(p / S) / devPerNode);
    if ((nodeOfGroup.get(g) ?? node) !== node) return true;
    nodeOfGroup.set(g, node);
  }
  return false;
}

/** Every broken invariant of a placement (empty when consistent); used by tests and the CLI. */
export function placementProblems(pl: Placement, checkHierarchy = pl.hierarchical): string[] {
  const { numExperts: N, numReplicas: R } = pl.spec;
  const p: string[] = [];
  pl.layers.forEach((l, li) => {
    if (l.physicalToLogical.length !== R) p.push(`layer ${li}: physicalToLogical has ${l.physicalToLogical.length} slots, expected ${R}`);
    const count = new Array<number>(N).fill(0);
    for (const e of l.physicalToLogical) {
      if (!Number.isInteger(e) || e < 0 || e >= N) { p.push(`layer ${li}: bad logical id ${e}`); return; }
      count[e]++;
    }
    for (let e = 0; e < N; e++) {
      if (count[e] === 0) p.push(`layer ${li}: expert ${e} has no replica`);
      if (l.logicalCount[e] !== count[e]) p.push(`layer ${li}: logicalCount[${e}]=${l.logicalCount[e]} but ${count[e]} slots hold it`);
      const row = l.logicalToPhysical[e];
      for (let r = 0; r < row.length; r++) {
        const ph = row[r];
        if (r < count[e] ? l.physicalToLogical[ph] !== e : ph !== -1) p.push(`layer ${li}: logicalToPhysical[${e}][${r}]=${ph} inconsistent`);
      }
    }
    if (checkHierarchy && groupsLeaveNodes(l.physicalToLogical, pl.spec)) p.push(`layer ${li}: an expert group spans several nodes`);
  });
  return p;
}
