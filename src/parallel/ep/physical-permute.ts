// Routing through an expert placement (dynamic placement, docs/placement.md): the router's permute is
// expert-major over LOGICAL experts; the EP dispatcher needs it slot-major over PHYSICAL slots, where
// slot p lives on EP rank ⌊p / slotsPerRank⌋. Pure host bookkeeping, numbers only.
//
// Replica choice (deterministic): the i-th row of logical expert e in this rank's permute goes to
// replica i mod logicalCount[e] (round-robin per rank, the even-split load model of the planner).
// Rows keep their relative order inside a slot, so without replicas and with the identity placement the
// physical permute IS the logical one. The router backward needs ∂L/∂probs in logical row order:
// `order` maps physical row i → logical row order[i].

/** What the dispatcher needs from a placement of one layer (a subset of placement's LayerPlacement). */
export interface SlotTable {
  physicalToLogical: readonly number[];   // [R]
  logicalCount: readonly number[];        // [N]
  logicalToPhysical: readonly (readonly number[])[]; // [N][≥ maxCount]
}

export interface LogicalPermute { sortedIndices: Int32Array; expertOfRow: Int32Array; permutedProbs: Float32Array; numRows: number }

export interface PhysicalPermute {
  /** token of each physical row [N] */
  sortedIndices: Int32Array;
  /** physical slot of each row [N] */
  slotOfRow: Int32Array;
  permutedProbs: Float32Array;
  /** rows per physical slot [R] */
  tokensPerSlot: number[];
  /** physical row i = logical row order[i] [N] */
  order: Int32Array;
  numRows: number;
}

/** The logical permute re-sorted by physical slot (stable). */
export function toPhysicalPermute(p: LogicalPermute, t: SlotTable): PhysicalPermute {
  const R = t.physicalToLogical.length, N = p.numRows;
  const seen = new Map<number, number>();
  const slot = new Int32Array(N);
  const tokensPerSlot = new Array<number>(R).fill(0);
  for (let i = 0; i < N; i++) {
    const e = p.expertOfRow[i], k = seen.get(e) ?? 0;
    seen.set(e, k + 1);
    slot[i] = t.logicalToPhysical[e][k % t.logicalCount[e]];
    tokensPerSlot[slot[i]]++;
  }
  const start = new Int32Array(R + 1);
  for (let s = 0; s < R; s++) start[s + 1] = start[s] + tokensPerSlot[s];
  const fill = start.slice(0, R);
  const order = new Int32Array(N);
  for (let i = 0; i < N; i++) order[fill[slot[i]]++] = i;
  return {
    sortedIndices: Int32Array.from(order, (i) => p.sortedIndices[i]),
    slotOfRow: Int32Array.from(order, (i) => slot[i]),
    permutedProbs: Float32Array.from(order, (i) => p.permutedProbs[i]),
    tokensPerSlot, order, numRows: N,
  };
}

/** ∂L/∂(physical rows) → ∂L/∂(logical rows). */
export function toLogicalRows(dPhysical: ArrayLike<number>, order: Int32Array): Float32Array {
  const out = new Float32Array(order.length);
  for (let i = 0; i < order.length; i++) out[order[i]] = dPhysical[i];
  return out;
}

/** The identity placement of N experts (slot p holds expert p), as a SlotTable. */
export function identitySlots(N: number): SlotTable {
  return { physicalToLogical: Array.from({ length: N }, (_, e) => e), logicalCount: new Array<number>(N).fill(1), logicalToPhysical: Array.from({ length: N }, (_, e) => [e]) };
}
