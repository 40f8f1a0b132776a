// Token permute / unpermute as tensor ops with hand-written backwards (moe-semantics §7). The
// permutation comes from the host plan (routing/permute-plan.ts): no indices derived from
// differentiated tensors (tfjs-notes P3), no gather backward through autograd (P4/P5):
//   permute:   permuted = x[sortedIndices] (gatherND)      backward: scatter-add rows into [T, H] (scatterND)
//   unpermute: out[sortedIndices[r]] += y[r]                backward: gather rows
// Probs are applied inside the experts (Megatron), so unpermute is a plain scatter-add.
import { tf } from '../../backend/tf.ts';
import { scatterAddRowsFused } from '../../backend/fused-scatter.ts';

/** x [T, H] → permuted [N, H] (row r = x[sortedIndices[r]]). */
export function permuteTokens(x: tf.Tensor2D, sortedIndices: Int32Array): tf.Tensor2D {
  return tf.tidy(() => {
    if (sortedIndices.length === 0) return tf.zeros([0, x.shape[1]]) as tf.Tensor2D;
    // gatherND, not gather: the wasm gather kernel is ~12x slower for row gathers (66 vs 5 ms at [4096 of 512, 128])
    return tf.gatherND(x, tf.tensor2d(sortedIndices, [sortedIndices.length, 1], 'int32')) as tf.Tensor2D;
  });
}

/** Scatter-add rows: out [T, H], out[sortedIndices[r]] += rows[r]. The backward of permute, the forward of unpermute. */
export function scatterAddRows(rows: tf.Tensor2D, sortedIndices: Int32Array, numTokens: number): tf.Tensor2D {
  // one SIMD row-add pass (src/backend/fused-scatter.ts); falls back to scatterND, which also sums
  // duplicate indices in row order (tfjs-notes P7)
  return scatterAddRowsFused(rows, sortedIndices, numTokens);
}

/** dPermuted [N, H] → dx [T, H]. */
export const permuteTokensBackward = scatterAddRows;

/** y [N, H] (already prob-weighted) → out [T, H]. */
export const unpermuteTokens = scatterAddRows;

/** dOut [T, H] → dy [N, H]. */
export const unpermuteTokensBackward = permuteTokens;
