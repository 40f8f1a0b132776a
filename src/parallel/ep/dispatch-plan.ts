// Pure bookkeeping of the expert-parallel all-to-all dispatcher (moe-semantics §8, Megatron
// MoEAlltoAllTokenDispatcher.preprocess / dispatch_postprocess / combine_preprocess). Numbers only.
//
// EP size P, E experts, E_loc = E/P; rank r owns experts [r·E_loc, (r+1)·E_loc).
// Each rank's local permute is expert-major, so the rows it sends to rank q are contiguous:
//   inputSplits[q]  = Σ_{e ∈ experts(q)} tokensPerExpert[e]
// The counts are all-gathered over the EP group → numGlobalTokensPerExpert [P, E]; on rank r:
//   outputSplits[src]                       = Σ_{e local} numGlobalTokensPerExpert[src, e]
//   numGlobalTokensPerLocalExpert[src, j]   = numGlobalTokensPerExpert[src, r·E_loc + j]     [P, E_loc]
//   tokensPerLocalExpert[j]                 = Σ_src numGlobalTokensPerLocalExpert[src, j]
// Received rows arrive (src0: e0,e1,…)(src1: e0,e1,…); sort_chunks_by_idxs reorders them to
// (e0: src0,src1,…)(e1: …) with chunk order arange(P·E_loc).reshape(P, E_loc).T.ravel(); the combine
// restores with arange(P·E_loc).reshape(E_loc, P).T.ravel(). Here both are row gathers: `sortRows`
// (received order → expert order) and `restoreRows` = its inverse.

export interface EPDispatchPlan {
  /** EP rank this plan belongs to, EP size, local experts */
  rank: number; size: number; numLocalExperts: number;
  /** rows sent to each EP rank [P] */
  inputSplits: number[];
  /** rows received from each EP rank [P] */
  outputSplits: number[];
  /** [P][E_loc] */
  numGlobalTokensPerLocalExpert: number[][];
  /** rows per local expert after sorting [E_loc] */
  tokensPerLocalExpert: number[];
  /** sorted row i = received row sortRows[i] [N_recv] */
  sortRows: Int32Array;
  /** received row i = sorted row restoreRows[i] (inverse of sortRows) [N_recv] */
  restoreRows: Int32Array;
}

/** The EP rank owning `expert`. */
export const expertOwner = (expert: number, numExperts: number, epSize: number) => Math.floor(expert / (numExperts / epSize));

/** Local experts of `rank`: [first, first + count). */
export function localExperts(rank: number, numExperts: number, epSize: number): { first: number; count: number } {
  if (numExperts % epSize !== 0) throw new Error(`numExperts ${numExperts} is not divisible by EP size ${epSize}`);
  const count = numExperts / epSize;
  return { first: rank * count, count };
}

/** Sort/restore chunk orders (Megatron's sort_input_by_local_experts / restore_output_by_local_experts). */
export function chunkOrders(P: number, Eloc: number): { sortChunks: number[]; restoreChunks: number[] } {
  const sortChunks: number[] = [], restoreChunks: number[] = [];
  for (let j = 0; j < Eloc; j++) for (let s = 0; s < P; s++) sortChunks.push(s * Eloc + j);    // reshape(P,E_loc).T.ravel()
  for (let s = 0; s < P; s++) for (let j = 0; j < Eloc; j++) restoreChunks.push(j * P + s);    // reshape(E_loc,P).T.ravel()
  return { sortChunks, restoreChunks };
}

/**
 * Plans of every EP rank from the all-gathered counts numGlobalTokensPerExpert [P][E] (row src = the
 * tokensPerExpert of EP rank src's local permute).
 */
export function planAllToAllDispatch(numGlobalTokensPerExpert: readonly (readonly number[])[]): EPDispatchPlan[] {
  const P = numGlobalTokensPerExpert.length, E = numGlobalTokensPerExpert[0]?.length ?? 0;
  if (P === 0 || E % P !== 0) throw new Error(`planAllToAllDispatch: ${E} experts over ${P} EP ranks`);
  const Eloc = E / P;
  const { sortChunks } = chunkOrders(P, Eloc);
  const inputSplitsOf = (src: number) => Array.from({ length: P }, (_, q) => {
    let n = 0;
    for (let j = 0; j < Eloc; j++) n += numGlobalTokensPerExpert[src][q * Eloc + j];
    return n;
  });
  return Array.from({ length: P }, (_, r) => {
    const perLocal = Array.from({ length: P }, (_, src) => Array.from({ length: Eloc }, (_, j) => numGlobalTokensPerExpert[src][r * Eloc + j]));
    const outputSplits = perLocal.map((row) => row.reduce((a, b) => a + b, 0));
    const tokensPerLocalExpert = Array.from({ length: Eloc }, (_, j) => perLocal.reduce((a, row) => a + row[j], 0));
    // chunk c = (src, j) in received order starts at chunkStart[c]
    const sizes = perLocal.flat();                                   // [P·E_loc], index src·E_loc + j
    const chunkStart: number[] = [];
    let o = 0;
    for (const s of sizes) { chunkStart.push(o); o += s; }
    const N = o;
    const sortRows = new Int32Array(N);
    let w = 0;
    for (const c of sortChunks) for (let i = 0; i < sizes[c]; i++) sortRows[w++] = chunkStart[c] + i;
    const restoreRows = new Int32Array(N);
    for (let i = 0; i < N; i++) restoreRows[sortRows[i]] = i;
    return {
      rank: r, size: P, numLocalExperts: Eloc, inputSplits: inputSplitsOf(r), outputSplits,
      numGlobalTokensPerLocalExpert: perLocal, tokensPerLocalExpert, sortRows, restoreRows,
    };
  });
}

/** Rows that leave their rank: Σ_src Σ_{q≠src} inputSplits (for the comm-bytes formula). */
export function offRankRows(plans: readonly EPDispatchPlan[]): number {
  let n = 0;
  for (const p of plans) p.inputSplits.forEach((c, q) => { if (q !== p.rank) n += c; });
  return n;
}
