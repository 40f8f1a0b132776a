// The permutation plan of a routing map (Megatron `permute`/`unpermute`, moe-semantics §7): rows are
// ordered expert-major, token-ascending, so expert e owns the contiguous block
// [offsets[e], offsets[e+1]) of the permuted tokens. With padToCapacity the final map has exactly
// `capacity` rows per expert, so the same plan is the padded [E·capacity] layout.
// Also host reference implementations of permute/unpermute for users' own tests.

export interface PermutePlan {
  T: number; E: number;
  /** Token of each permuted row. [N] */
  sortedIndices: Int32Array;
  /** Expert of each permuted row. [N] */
  expertOfRow: Int32Array;
  /** Rows per expert. [E] */
  tokensPerExpert: number[];
  /** Row offsets, offsets[E] = N. [E + 1] */
  offsets: Int32Array;
  /** probs[sortedIndices[r], expertOfRow[r]]. [N] */
  permutedProbs: Float32Array;
  numRows: number;
}

/** Expert-major row blocks from per-expert counts: block offsets, empty row arrays and a write cursor per expert. */
function expertBlocks(counts: Int32Array) {
  const E = counts.length, offsets = new Int32Array(E + 1);
  for (let e = 0; e < E; e++) offsets[e + 1] = offsets[e] + counts[e];
  const N = offsets[E];
  return {
    tokensPerExpert: Array.from(counts), offsets, N, cursor: offsets.slice(0, E),
    sortedIndices: new Int32Array(N), expertOfRow: new Int32Array(N), permutedProbs: new Float32Array(N),
  };
}

/** Plan from a final routing map [T, E] and dense probs [T, E]. */
export function permutePlan(routingMap: Uint8Array, probs: ArrayLike<number>, T: number, E: number): PermutePlan {
  const counts = new Int32Array(E);
  for (let t = 0; t < T; t++) for (let e = 0; e < E; e++) counts[e] += routingMap[t * E + e];
  const { tokensPerExpert, offsets, N, sortedIndices, expertOfRow, permutedProbs, cursor } = expertBlocks(counts);
  for (let t = 0; t < T; t++) {            // token-ascending within each expert block
    for (let e = 0; e < E; e++) {
      if (!routingMap[t * E + e]) continue;
      const r = cursor[e]++;
      sortedIndices[r] = t;
      expertOfRow[r] = e;
      permutedProbs[r] = probs[t * E + e];
    }
  }
  return { T, E, sortedIndices, expertOfRow, tokensPerExpert, offsets, permutedProbs, numRows: N };
}

/**
 * The same plan straight from top-k routing (dropless: the final map is the selection): indices
 * [T, k] and combine weights [T, k] (times `scale` = the prob), no [T, E] pass. Identical output.
 */
export function permutePlanFromTopk(topkIdx: Int32Array, topkWeights: ArrayLike<number>, scale: number, T: number, E: number, k: number): PermutePlan {
  const counts = new Int32Array(E);
  for (let i = 0; i < T * k; i++) counts[topkIdx[i]]++;
  const { tokensPerExpert, offsets, N, sortedIndices, expertOfRow, permutedProbs, cursor } = expertBlocks(counts);
  for (let t = 0; t < T; t++) {            // token-ascending within each expert block
    for (let j = 0; j < k; j++) {
      const e = topkIdx[t * k + j], r = cursor[e]++;
      sortedIndices[r] = t;
      expertOfRow[r] = e;
      permutedProbs[r] = topkWeights[t * k + j] * scale;
    }
  }
  return { T, E, sortedIndices, expertOfRow, tokensPerExpert, offsets, permutedProbs, numRows: N };
}

/** Host reference: permuted[r] = x[sortedIndices[r]]. x [T, H] → [N, H]. */
export function permuteRows(x: ArrayLike<number>, H: number, plan: PermutePlan): Float32Array {
  const out = new Float32Array(plan.numRows * H);
  for (let r = 0; r < plan.numRows; r++) {
    const t = plan.sortedIndices[r];
    for (let h = 0; h < H; h++) out[r * H + h] = x[t * H + h];
  }
  return out;
}

/** Host reference: out[sortedIndices[r]] += (permutedProbs[r] if withProbs) · y[r]. y [N, H] → [T, H]. */
export function unpermuteRows(y: ArrayLike<number>, H: number, plan: PermutePlan, withProbs = false): Float32Array {
  const out = new Float32Array(plan.T * H);
  for (let r = 0; r < plan.numRows; r++) {
    const t = plan.sortedIndices[r], p = withProbs ? plan.permutedProbs[r] : 1;
    for (let h = 0; h < H; h++) out[t * H + h] += p * y[r * H + h];
  }
  return out;
}
