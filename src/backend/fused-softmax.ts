// Fused softmax backward for attention, with the softmax scale folded in (one kernel instead of
// four on [G, S, S], plus the two scale multiplies on [G, S, d] it makes unnecessary):
//   dscores·scale = scale · probs ⊙ (dprobs − Σ_row dprobs ⊙ probs)
// so that dq = (dscores·scale)·k and dk = qᵀ·(dscores·scale) need no further scaling. Rows are the
// last axis. float32; the row sum is ordered by 4 SIMD lanes. wasm: SIMD when the row length is a
// multiple of 4, else JS; cpu: JS. Backward only (no gradient registered).
import { tf } from './tfjs.ts';
import { fusedKernels, hasKernel, runFused, type FusedSpec } from './fused-kernel.ts';
import { I32, F32, V128, op, loop, at, hsum, simdModule, type FnDef } from './simd-asm.ts';

export const SOFTMAX_GRAD = 'UltramoeSoftmaxGrad';

function softmaxGradFn(): FnDef {
  const [p, dp, out, R, S, scale] = [0, 1, 2, 3, 4, 5];
  const [r, j, oP, oD, oO, sb, acc, dv, sv, tmp] = [6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
  const row = (base: number, o: number) => [...op.get(r), ...op.get(sb), ...op.imul, ...op.get(base), ...op.iadd, ...op.set(o)];
  const ld = (base: number) => [...at(base, j), ...op.vload];
  return {
    name: 'softmax_grad', params: [I32, I32, I32, I32, I32, F32], locals: [I32, I32, I32, I32, I32, I32, V128, V128, V128, V128],
    body: [
      ...op.get(S), ...op.i32(4), ...op.imul, ...op.set(sb),
      ...op.get(scale), ...op.splat, ...op.set(sv),
      ...loop(r, op.i32(0), op.get(R), 1, [
        ...row(p, oP), ...row(dp, oD), ...row(out, oO),
        ...op.vzero, ...op.set(acc),
        ...loop(j, op.i32(0), op.get(sb), 16, [...op.get(acc), ...ld(oD), ...ld(oP), ...op.vmul, ...op.vadd, ...op.set(acc)]),
        ...op.get(acc), ...hsum(tmp), ...op.splat, ...op.set(dv),
        ...loop(j, op.i32(0), op.get(sb), 16, [...at(oO, j), ...ld(oP), ...ld(oD), ...op.get(dv), ...op.vsub, ...op.vmul, ...op.get(sv), ...op.vmul, ...op.vstore]),
      ]),
    ],
  };
}
const softmaxSimd = simdModule<{ softmax_grad(p: number, dp: number, out: number, R: number, S: number, scale: number): void }>(() => [softmaxGradFn()]);

const fr = Math.fround;
const spec: FusedSpec<{ scale: number }> = {
  name: SOFTMAX_GRAD,
  outShapes: ({ probs }) => [probs!.shape],
  js: ({ probs, dprobs }, [out], { probs: pi }, { scale }) => {
    const S = pi!.shape[pi!.shape.length - 1], R = probs!.length / S, sc = fr(scale);
    for (let r = 0; r < R; r++) {
      let dot = 0;
      for (let j = r * S; j < (r + 1) * S; j++) dot = fr(dot + fr(dprobs![j] * probs![j]));
      for (let j = r * S; j < (r + 1) * S; j++) out[j] = fr(probs![j] * fr(dprobs![j] - dot)) * sc;
    }
  },
  simd: (b, o, [out], { probs }, { scale }) => {
    const S = probs!.shape[probs!.shape.length - 1], k = softmaxSimd(b);
    if (!k || S % 4 !== 0) return false;
    k.softmax_grad(o.probs, o.dprobs, out, probs!.shape.reduce((a, c) => a * c, 1) / S, S, scale);
    return true;
  },
};
export const softmaxKernels = fusedKernels(spec);

/** scale·∂L/∂scores from probs = softmax(scores) and dprobs = ∂L/∂probs (same shape; rows = last axis). */
export function softmaxBackward(probs: tf.Tensor, dprobs: tf.Tensor, scale = 1): tf.Tensor {
  if (probs.shape.join() !== dprobs.shape.join()) throw new Error(`softmaxBackward: shapes differ: [${probs.shape}] vs [${dprobs.shape}]`);
  if (!hasKernel(SOFTMAX_GRAD)) return tf.tidy(() => tf.mul(tf.mul(probs, tf.sub(dprobs, tf.sum(tf.mul(dprobs, probs), -1, true))), scale));
  return runFused(SOFTMAX_GRAD, { probs, dprobs }, { scale })[0];
}
