// Process groups in Megatron-Core rank order (megatron/core/parallel_state.py, RankGenerator):
//   dense layers:  rank = tp + TP·(cp + CP·(dp + DP·pp))        order "tp-cp-dp-pp", tp fastest
//   expert layers: rank = etp + ETP·(ep + EP·(edp + EDP·pp))    order "tp-ep-dp-pp" with tp = expert-TP
// so TP neighbours are adjacent ranks (inside one node when TP <= devices per node) and PP is outermost.
// A group lists global ranks ordered by its own coordinate. Pure functions on numbers.

export interface ParallelDims {
  tp: number;
  pp: number;
  cp?: number;
  ep?: number;
  /** expert tensor parallel size (default 1) */
  etp?: number;
  /** data parallel size; derived as world / (tp·cp·pp) when omitted */
  dp?: number;
}

export type GroupKind = 'tp' | 'cp' | 'dp' | 'pp' | 'dp-cp' | 'tp-cp' | 'ep' | 'etp' | 'edp' | 'etp-ep' | 'world';

export interface ProcessGroup {
  readonly kind: GroupKind | string;
  /** Global ranks, index i = rank i of the group. */
  readonly ranks: readonly number[];
}

export interface ResolvedDims { world: number; tp: number; cp: number; dp: number; pp: number; ep: number; etp: number; edp: number }

/** Validate and complete the parallel sizes for `world` ranks; one error lists every problem. */
export function resolveDims(world: number, d: ParallelDims): ResolvedDims {
  const problems: string[] = [];
  const cp = d.cp ?? 1, ep = d.ep ?? 1, etp = d.etp ?? 1;
  const sizes: Record<string, number | undefined> = { tp: d.tp, pp: d.pp, cp, ep, etp, dp: d.dp };
  for (const [k, v] of Object.entries(sizes)) if (v !== undefined && !(Number.isInteger(v) && v >= 1)) problems.push(`${k}: expected an integer >= 1, got ${v}`);
  if (!(Number.isInteger(world) && world >= 1)) problems.push(`world: expected an integer >= 1, got ${world}`);
  if (problems.length === 0) {
    const dense = d.tp * cp * d.pp;
    if (world % dense !== 0) problems.push(`world ${world} is not divisible by tp·cp·pp = ${d.tp}·${cp}·${d.pp} = ${dense}`);
    else if (d.dp !== undefined && d.dp * dense !== world) problems.push(`tp·cp·dp·pp = ${dense * d.dp} != world ${world}`);
    const expert = etp * ep * d.pp;
    if (world % expert !== 0) problems.push(`world ${world} is not divisible by etp·ep·pp = ${etp}·${ep}·${d.pp} = ${expert}`);
  }
  if (problems.length) throw new Error(`invalid parallel layout, ${problems.length} problem(s):\n  - ${problems.join('\n  - ')}`);
  const dp = world / (d.tp * cp * d.pp), edp = world / (etp * ep * d.pp);
  return { world, tp: d.tp, cp, dp, pp: d.pp, ep, etp, edp };
}

/**
 * Groups of an orthogonal grid (Megatron `generate_masked_orthogonal_rank_groups`): `sizes` fastest first;
 * ranks that differ only in the `vary` dims form one group. Groups are ordered by the fixed coordinates.
 */
export function orthogonalGroups(sizes: number[], vary: boolean[]): number[][] {
  const strides = sizes.map((_, i) => sizes.slice(0, i).reduce((a, b) => a * b, 1));
  const fixedDims = sizes.map((_, i) => i).filter((i) => !vary[i]);
  const varyDims = sizes.map((_, i) => i).filter((i) => vary[i]);
  const count = (dims: number[]) => dims.reduce((a, i) => a * sizes[i], 1);
  const coord = (idx: number, dims: number[]) => { // mixed-radix decode, first dim fastest
    const c: number[] = [];
    for (const i of dims) { c.push(idx % sizes[i]); idx = Math.floor(idx / sizes[i]); }
    return c;
  };
  const groups: number[][] = [];
  for (let g = 0; g < count(fixedDims); g++) {
    const fc = coord(g, fixedDims);
    const base = fixedDims.reduce((s, i, j) => s + fc[j] * strides[i], 0);
    const ranks: number[] = [];
    for (let r = 0; r < count(varyDims); r++) {
      const vc = coord(r, varyDims);
      ranks.push(base + varyDims.reduce((s, i, j) => s + vc[j] * strides[i], 0));
    }
    groups.push(ranks);
  }
  return groups;
}

/** Every group of `kind` (a partition of all ranks). */
export function groupsOf(kind: GroupKind, dims: ResolvedDims): number[][] {
  const dense = [dims.tp, dims.cp, dims.dp, dims.pp];
  const expert = [dims.etp, dims.ep, dims.edp, dims.pp];
  switch (kind) {
    case 'tp': return orthogonalGroups(dense, [true, false, false, false]);
    case 'cp': return orthogonalGroups(dense, [false, true, false, false]);
    case 'dp': return orthogonalGroups(dense, [false, false, true, false]);
    case 'pp': return orthogonalGroups(dense, [false, false, false, true]);
    case 'dp-cp': return orthogonalGroups(dense, [false, true, true, false]);
    case 'tp-cp': return orthogonalGroups(dense, [true, true, false, false]);
    case 'etp': return orthogonalGroups(expert, [true, false, false, false]);
    case 'ep': return orthogonalGroups(expert, [false, true, false, false]);
    case 'edp': return orthogonalGroups(expert, [false, false, true, false]);
    case 'etp-ep': return orthogonalGroups(expert, [true, true, false, false]);
    case 'world': return [Array.from({ length: dims.world }, (_, i) => i)];
  }
}

/** The group of `kind` that contains `rank`. */
export function groupOf(kind: GroupKind, rank: number, dims: ResolvedDims): ProcessGroup {
  const g = groupsOf(kind, dims).find((rs) => rs.includes(rank));
  if (!g) throw new Error(`rank ${rank} is outside the world of ${dims.world} ranks`);
  return { kind, ranks: g };
}

/** Coordinates of `rank` in both grids. */
export function rankCoords(rank: number, dims: ResolvedDims): { tp: number; cp: number; dp: number; pp: number; etp: number; ep: number; edp: number } {
  const tp = rank % dims.tp, cp = Math.floor(rank / dims.tp) % dims.cp;
  const dp = Math.floor(rank / (dims.tp * dims.cp)) % dims.dp, pp = Math.floor(rank / (dims.tp * dims.cp * dims.dp));
  const etp = rank % dims.etp, ep = Math.floor(rank / dims.etp) % dims.ep, edp = Math.floor(rank / (dims.etp * dims.ep)) % dims.edp;
  return { tp, cp, dp, pp, etp, ep, edp };
}
