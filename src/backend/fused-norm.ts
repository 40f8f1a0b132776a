// Fused RMSNorm forward and backward (one kernel each instead of ~7 and ~10 tfjs kernels), over the
// last axis of x [..., D], rows R = size/D:
//   forward:  rstd = 1/sqrt(Σx²/D + eps) [..., 1],  y = (x·rstd)·g
//   backward: xhat = x·rstd,  dg = Σ_rows dy·xhat [D],  dxhat = dy·g,
//             dx = rstd·(dxhat − xhat·mean(dxhat·xhat))  (+ residual: the block's skip connection)
// float32 throughout, the same operation order as the tfjs formulation in src/model/norm.ts; only
// the row sums are ordered differently (4 SIMD lanes), so results agree to float32 rounding.
// wasm: SIMD when D % 4 = 0 (simd-asm.ts), else JS loops; cpu: JS loops. The forward kernel has a
// gradient written with stock ops, so tf.grads works through it (the module tests' oracle).
import { tf } from './tfjs.ts';
import { fusedKernels, hasKernel, runFused, type FusedSpec } from './fused-kernel.ts';
import { I32, F32, V128, op, loop, at, hsum, simdModule, type FnDef } from './simd-asm.ts';
import { f32View } from './wasm-heap.ts';

export const RMS_NORM = 'UltramoeRmsNorm', RMS_NORM_GRAD = 'UltramoeRmsNormGrad';

// ---------------------------------------------------------------------------------------------
// wasm SIMD
function forwardFn(): FnDef {
  const [x, g, y, rstd, R, D, eps] = [0, 1, 2, 3, 4, 5, 6];
  const [r, j, rowX, rowY, db, rs, acc, rsv, tmp] = [7, 8, 9, 10, 11, 12, 13, 14, 15];
  const ld = (base: number) => [...at(base, j), ...op.vload];
  return {
    name: 'rmsnorm', params: [I32, I32, I32, I32, I32, I32, F32], locals: [I32, I32, I32, I32, I32, F32, V128, V128, V128],
    body: [
      ...op.get(D), ...op.i32(4), ...op.imul, ...op.set(db),
      ...loop(r, op.i32(0), op.get(R), 1, [
        ...op.get(r), ...op.get(db), ...op.imul, ...op.get(x), ...op.iadd, ...op.set(rowX),
        ...op.get(r), ...op.get(db), ...op.imul, ...op.get(y), ...op.iadd, ...op.set(rowY),
        ...op.vzero, ...op.set(acc),
        ...loop(j, op.i32(0), op.get(db), 16, [...op.get(acc), ...ld(rowX), ...ld(rowX), ...op.vmul, ...op.vadd, ...op.set(acc)]),
        ...op.f32(1), ...op.get(acc), ...hsum(tmp), ...op.get(D), ...op.fconv, ...op.fdiv, ...op.get(eps), ...op.fadd, ...op.fsqrt, ...op.fdiv, ...op.set(rs),
        ...op.get(r), ...op.i32(4), ...op.imul, ...op.get(rstd), ...op.iadd, ...op.get(rs), ...op.fstore,
        ...op.get(rs), ...op.splat, ...op.set(rsv),
        ...loop(j, op.i32(0), op.get(db), 16, [...at(rowY, j), ...ld(rowX), ...op.get(rsv), ...op.vmul, ...ld(g), ...op.vmul, ...op.vstore]),
      ]),
    ],
  };
}

function backwardFn(residual: boolean): FnDef {
  const [dy, x, rstd, g, dx, dg, res, R, D] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const [r, j, oDy, oX, oDx, oRes, db, rs, proj, acc, rsv, xh, d, tmp, pv] = [9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23];
  const ld = (base: number) => [...at(base, j), ...op.vload];
  const rowOf = (base: number, out: number) => [...op.get(r), ...op.get(db), ...op.imul, ...op.get(base), ...op.iadd, ...op.set(out)];
  return {
    name: residual ? 'rmsnorm_bwd_res' : 'rmsnorm_bwd', params: [I32, I32, I32, I32, I32, I32, I32, I32, I32],
    locals: [I32, I32, I32, I32, I32, I32, I32, F32, F32, V128, V128, V128, V128, V128, V128],
    body: [
      ...op.get(D), ...op.i32(4), ...op.imul, ...op.set(db),
      ...loop(r, op.i32(0), op.get(R), 1, [
        ...rowOf(dy, oDy), ...rowOf(x, oX), ...rowOf(dx, oDx), ...rowOf(res, oRes),
        ...op.get(r), ...op.i32(4), ...op.imul, ...op.get(rstd), ...op.iadd, ...op.fload, ...op.set(rs),
        ...op.get(rs), ...op.splat, ...op.set(rsv), ...op.vzero, ...op.set(acc),
        ...loop(j, op.i32(0), op.get(db), 16, [
          ...ld(oX), ...op.get(rsv), ...op.vmul, ...op.set(xh),
          ...ld(oDy), ...op.set(d),
          ...op.get(acc), ...op.get(d), ...ld(g), ...op.vmul, ...op.get(xh), ...op.vmul, ...op.vadd, ...op.set(acc),
          ...at(dg, j), ...ld(dg), ...op.get(d), ...op.get(xh), ...op.vmul, ...op.vadd, ...op.vstore,
        ]),
        ...op.get(acc), ...hsum(tmp), ...op.get(D), ...op.fconv, ...op.fdiv, ...op.set(proj),
        ...op.get(proj), ...op.splat, ...op.set(pv),
        ...loop(j, op.i32(0), op.get(db), 16, [
          ...at(oDx, j),
          ...op.get(rsv), ...ld(oDy), ...ld(g), ...op.vmul, ...ld(oX), ...op.get(rsv), ...op.vmul, ...op.get(pv), ...op.vmul, ...op.vsub, ...op.vmul,
          ...(residual ? [...ld(oRes), ...op.vadd] : []),
          ...op.vstore,
        ]),
      ]),
    ],
  };
}

interface NormSimd {
  rmsnorm(x: number, g: number, y: number, rstd: number, R: number, D: number, eps: number): void;
  rmsnorm_bwd(dy: number, x: number, rstd: number, g: number, dx: number, dg: number, res: number, R: number, D: number): void;
  rmsnorm_bwd_res(dy: number, x: number, rstd: number, g: number, dx: number, dg: number, res: number, R: number, D: number): void;
}
const normSimd = simdModule<NormSimd>(() => [forwardFn(), backwardFn(false), backwardFn(true)]);

// ---------------------------------------------------------------------------------------------
// Kernels
const fr = Math.fround;
const lastDim = (s: number[]) => s[s.length - 1];

const forwardSpec: FusedSpec<{ eps: number }> = {
  name: RMS_NORM,
  outShapes: ({ x }) => [x!.shape, [...x!.shape.slice(0, -1), 1]],
  js: ({ x, g }, [y, rstd], { x: xi }, { eps }) => {
    const D = lastDim(xi!.shape), R = x!.length / D;
    for (let r = 0; r < R; r++) {
      let ss = 0;
      for (let j = r * D; j < (r + 1) * D; j++) ss = fr(ss + fr(x![j] * x![j]));
      const rs = fr(1 / fr(Math.sqrt(fr(fr(ss / D) + eps))));
      rstd[r] = rs;
      for (let j = 0; j < D; j++) y[r * D + j] = fr(x![r * D + j] * rs) * g![j];
    }
  },
  simd: (b, ins, [y, rstd], { x }, { eps }) => {
    const D = lastDim(x!.shape), k = normSimd(b);
    if (!k || D % 4 !== 0) return false;
    k.rmsnorm(ins.x, ins.g, y, rstd, x!.shape.reduce((a, c) => a * c, 1) / D, D, eps);
    return true;
  },
};

const backwardSpec: FusedSpec<Record<string, never>> = {
  name: RMS_NORM_GRAD,
  outShapes: ({ x }) => [x!.shape, [lastDim(x!.shape)]],
  js: ({ dy, x, rstd, g, res }, [dx, dg], { x: xi }) => {
    const D = lastDim(xi!.shape), R = x!.length / D;
    dg.fill(0);
    for (let r = 0; r < R; r++) {
      const rs = rstd![r], o = r * D;
      let acc = 0;
      for (let j = 0; j < D; j++) {
        const xh = fr(x![o + j] * rs), d = dy![o + j];
        acc = fr(acc + fr(fr(d * g![j]) * xh));
        dg[j] = fr(dg[j] + fr(d * xh));
      }
      const proj = fr(acc / D);
      for (let j = 0; j < D; j++) {
        const xh = fr(x![o + j] * rs);
        const v = fr(rs * fr(fr(dy![o + j] * g![j]) - fr(xh * proj)));
        dx[o + j] = res ? v + res[o + j] : v;
      }
    }
  },
  simd: (b, ins, [dx, dg], { x }) => {
    const D = lastDim(x!.shape), k = normSimd(b);
    if (!k || D % 4 !== 0) return false;
    f32View(b, dg, D).fill(0);
    const R = x!.shape.reduce((a, c) => a * c, 1) / D;
    (ins.res ? k.rmsnorm_bwd_res : k.rmsnorm_bwd)(ins.dy, ins.x, ins.rstd, ins.g, dx, dg, ins.res, R, D);
    return true;
  },
};

export const rmsNormKernels = [...fusedKernels(forwardSpec), ...fusedKernels(backwardSpec)];

// ---------------------------------------------------------------------------------------------
// Stock-op formulations: the fallback on backends without the kernels, and the forward's gradient
function rstdOps(x: tf.Tensor, eps: number): tf.Tensor { return tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), eps)); }
function backwardOps(dy: tf.Tensor, x: tf.Tensor, rstd: tf.Tensor, g: tf.Tensor): { dx: tf.Tensor; dg: tf.Tensor } {
  const xhat = tf.mul(x, rstd), D = lastDim(x.shape);
  const dg = tf.sum(tf.reshape(tf.mul(dy, xhat), [-1, D]), 0);
  const dxhat = tf.mul(dy, g);
  return { dx: tf.mul(rstd, tf.sub(dxhat, tf.mul(xhat, tf.mean(tf.mul(dxhat, xhat), -1, true)))), dg };
}

tf.registerGradient({
  kernelName: RMS_NORM, inputsToSave: ['x', 'g'], outputsToSave: [false, true],
  gradFunc: (dys, saved) => {
    const [dY, dR] = dys as tf.Tensor[];
    const [x, g, rstd] = saved;
    const { dx, dg } = backwardOps(dY, x, rstd, g);
    // rstd = (mean x² + eps)^(-1/2): ∂rstd/∂x = −rstd³·x/D
    const dxR = tf.mul(tf.mul(dR, tf.pow(rstd, 3)), tf.div(x, -lastDim(x.shape)));
    return { x: () => tf.add(dx, dxR), g: () => dg };
  },
});

/** y = x·rstd·g and rstd [..., 1] for x [..., D], g [D]. */
export function rmsNorm(x: tf.Tensor, g: tf.Tensor, eps: number): { y: tf.Tensor; rstd: tf.Tensor } {
  if (!hasKernel(RMS_NORM)) return tf.tidy(() => { const rstd = rstdOps(x, eps); return { y: tf.mul(tf.mul(x, rstd), g), rstd }; });
  const [y, rstd] = runFused(RMS_NORM, { x, g }, { eps });
  return { y, rstd };
}

/** dx (+ residual, same shape as x) and dg [D] of rmsNorm for the output gradient dy. */
export function rmsNormBackward(dy: tf.Tensor, x: tf.Tensor, rstd: tf.Tensor, g: tf.Tensor, residual?: tf.Tensor): { dx: tf.Tensor; dg: tf.Tensor } {
  if (!hasKernel(RMS_NORM_GRAD)) {
    return tf.tidy(() => { const r = backwardOps(dy, x, rstd, g); return { dx: residual ? tf.add(r.dx, residual) : r.dx, dg: r.dg }; });
  }
  const [dx, dg] = runFused(RMS_NORM_GRAD, { dy, x, rstd, g, res: residual }, {});
  return { dx, dg };
}
