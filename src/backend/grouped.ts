// Grouped GEMM for MoE experts: the token rows are sorted expert-major and `counts[e]` rows belong to
// expert e. One registered kernel ('UltramoeGroupedGemm') per backend loops the GEMM primitive over
// the groups, reading operands in place (wasm: heap offsets, no slices, no concat) and writing
// straight into one output. Forward-only: there is no gradient; the MoE layer writes its backward
// with groupedMatMulTransposed (input grad) and groupedWeightGrad (weight grad).
import { tf, type KernelConfig, type TensorInfo } from './tfjs.ts';
import { activeGemm, jsGemm } from './gemm.ts';
import { internals, offsetOf, f32View } from './wasm-heap.ts';

export const GROUPED_GEMM = 'UltramoeGroupedGemm';
/** nn: y_e = x_e·w_e   nt: dx_e = dy_e·w_eᵀ   tn: dw_e = x_eᵀ·dy_e   nt2: dx_e = dy_e·w_eᵀ + dy2_e·w2_eᵀ */
type Mode = 'nn' | 'nt' | 'tn' | 'nt2';
interface Plan { mode: Mode; counts: number[]; E: number; H: number; F: number; N: number; outShape: number[] }

/** y[N,F]: row block e of x[N,H] times w[e] ([E,H,F]); sum(counts) = N, counts.length = E. */
export function groupedMatMul(x: tf.Tensor2D, w: tf.Tensor3D, counts: number[]): tf.Tensor2D {
  return run('nn', x, w, counts) as tf.Tensor2D;
}
/** dx[N,H]: row block e of dy[N,F] times w[e]ᵀ (the input gradient of groupedMatMul). */
export function groupedMatMulTransposed(dy: tf.Tensor2D, w: tf.Tensor3D, counts: number[]): tf.Tensor2D {
  return run('nt', dy, w, counts) as tf.Tensor2D;
}
/** dx[N,H] = groupedMatMulTransposed(dy, w) + groupedMatMulTransposed(dy2, w2), the second product
 *  accumulated into the first in the GEMM (BLAS beta = 1): one output, no separate add. */
export function groupedMatMulTransposedSum(dy: tf.Tensor2D, w: tf.Tensor3D, dy2: tf.Tensor2D, w2: tf.Tensor3D, counts: number[]): tf.Tensor2D {
  const p = plan('nt', dy, w, counts), p2 = plan('nt', dy2, w2, counts);
  if (p.H !== p2.H || p.F !== p2.F) throw new Error(`groupedMatMulTransposedSum: shapes differ: [${dy.shape}]·[${w.shape}]ᵀ vs [${dy2.shape}]·[${w2.shape}]ᵀ`);
  if (tf.getKernel(GROUPED_GEMM, tf.getBackend())) {
    const attrs = { mode: 'nt2', counts } as unknown as tf.NamedAttrMap;
    return tf.engine().runKernel(GROUPED_GEMM, { a: dy, b: w, a2: dy2, b2: w2 }, attrs) as tf.Tensor2D;
  }
  return tf.tidy(() => tf.add(viaOps(p, dy, w), viaOps(p2, dy2, w2))) as tf.Tensor2D;
}
/** dw[E,H,F]: x_eᵀ·dy_e per expert (zeros for experts with no rows); the weight gradient. */
export function groupedWeightGrad(x: tf.Tensor2D, dy: tf.Tensor2D, counts: number[]): tf.Tensor3D {
  return run('tn', x, dy, counts) as tf.Tensor3D;
}

function plan(mode: Mode, a: tf.Tensor, b: tf.Tensor, counts: number[]): Plan {
  const what = { nn: 'groupedMatMul(x[N,H], w[E,H,F])', nt: 'groupedMatMulTransposed(dy[N,F], w[E,H,F])', tn: 'groupedWeightGrad(x[N,H], dy[N,F])', nt2: 'groupedMatMulTransposedSum' }[mode];
  const fail = (msg: string): never => { throw new Error(`${what}: ${msg}`); };
  if (a.rank !== 2 || b.rank !== (mode === 'tn' ? 2 : 3)) fail(`got shapes [${a.shape}] and [${b.shape}]`);
  if (a.dtype !== 'float32' || b.dtype !== 'float32') fail('float32 only');
  const as = a.shape as number[], bs = b.shape as number[];
  const N = as[0];
  let sum = 0;
  for (const c of counts) { if (!Number.isInteger(c) || c < 0) fail(`counts must be non-negative integers, got ${c}`); sum += c; }
  if (sum !== N) fail(`counts sum to ${sum} but there are ${N} rows`);
  const E = counts.length;
  if (mode === 'tn') {
    if (bs[0] !== N) fail(`row counts differ: [${as}] vs [${bs}]`);
    return { mode, counts, E, N, H: as[1], F: bs[1], outShape: [E, as[1], bs[1]] };
  }
  const [We, H, F] = bs;
  if (We !== E) fail(`w has ${We} experts but counts has ${E}`);
  if (as[1] !== (mode === 'nn' ? H : F)) fail(`inner dims differ: [${a.shape}] vs [${b.shape}]`);
  return { mode, counts, E, N, H, F, outShape: mode === 'nn' ? [N, F] : [N, H] };
}

function run(mode: Mode, a: tf.Tensor, b: tf.Tensor, counts: number[]): tf.Tensor {
  const p = plan(mode, a, b, counts);
  if (tf.getKernel(GROUPED_GEMM, tf.getBackend())) {
    const attrs = { mode, counts } as unknown as tf.NamedAttrMap;
    return tf.engine().runKernel(GROUPED_GEMM, { a, b }, attrs) as tf.Tensor;
  }
  return viaOps(p, a, b); // backends without our kernel (e.g. tfjs-node)
}

/** Fallback with stock ops: slices + 2-D matMuls + one concat. */
function viaOps(p: Plan, a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const parts: tf.Tensor[] = [];
    let row = 0;
    for (let e = 0; e < p.E; e++) {
      const r = p.counts[e];
      if (p.mode === 'tn') {
        parts.push(r === 0 ? tf.zeros([1, p.H, p.F]) :
          tf.matMul(tf.slice(a, [row, 0], [r, p.H]), tf.slice(b, [row, 0], [r, p.F]), true, false).reshape([1, p.H, p.F]));
      } else if (r > 0) {
        const we = tf.reshape(tf.slice(b, [e, 0, 0], [1, p.H, p.F]), [p.H, p.F]);
        const ae = tf.slice(a, [row, 0], [r, (a.shape as number[])[1]]);
        parts.push(p.mode === 'nn' ? tf.matMul(ae, we) : tf.matMul(ae, we, false, true));
      }
      row += r;
    }
    if (parts.length === 0) return tf.zeros(p.outShape);
    return parts.length === 1 ? parts[0].reshape(p.outShape) : tf.concat(parts, 0);
  });
}

/** The per-group GEMM calls, shared by both backends; `gemm` gets element offsets; `second` selects
 *  the nt2 mode's second operand pair, accumulated into the output. */
type GroupGemm = (tA: boolean, tB: boolean, M: number, N: number, K: number, a: number, b: number, c: number, second?: boolean) => void;
function forEachGroup(p: Plan, gemm: GroupGemm, zero: (off: number, len: number) => void): void {
  const { H, F } = p;
  let row = 0;
  for (let e = 0; e < p.E; e++) {
    const r = p.counts[e];
    if (p.mode === 'nn') { if (r > 0) gemm(false, false, r, F, H, row * H, e * H * F, row * F); }
    else if (p.mode === 'nt') { if (r > 0) gemm(false, true, r, H, F, row * F, e * H * F, row * H); }
    else if (p.mode === 'nt2') {
      if (r > 0) { gemm(false, true, r, H, F, row * F, e * H * F, row * H); gemm(false, true, r, H, F, row * F, e * H * F, row * H, true); }
    }
    else if (r > 0) gemm(true, false, H, F, r, row * H, row * F, e * H * F);
    else zero(e * H * F, H * F);
    row += r;
  }
}

function planOf(inputs: { a: TensorInfo; b: TensorInfo }, attrs: { mode: Mode; counts: number[] }): Plan {
  const { a, b } = inputs;
  const E = attrs.counts.length, N = a.shape[0];
  if (attrs.mode === 'tn') return { ...attrs, E, N, H: a.shape[1], F: b.shape[1], outShape: [E, a.shape[1], b.shape[1]] };
  const [, H, F] = b.shape;
  return { ...attrs, E, N, H, F, outShape: attrs.mode === 'nn' ? [N, F] : [N, H] };
}
interface GroupedInputs { a: TensorInfo; b: TensorInfo; a2?: TensorInfo; b2?: TensorInfo }
function pairOf(ins: GroupedInputs, second: boolean): [TensorInfo, TensorInfo] {
  return second ? [ins.a2!, ins.b2!] : [ins.a, ins.b];
}

export const groupedGemmWasm: KernelConfig = {
  kernelName: GROUPED_GEMM,
  backendName: 'wasm',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const b = internals(backend);
    const ins = inputs as unknown as GroupedInputs;
    const p = planOf(ins, attrs as unknown as { mode: Mode; counts: number[] });
    const out = b.makeOutput(p.outShape, 'float32'); // allocate first: may grow the heap
    const oOff = offsetOf(b, out);
    const g = activeGemm();
    forEachGroup(p, (tA, tB, M, N, K, ao, bo, co, second = false) => {
      const [x, y] = pairOf(ins, second);
      g.sgemm(b, tA, tB, M, N, K, offsetOf(b, x) + 4 * ao, offsetOf(b, y) + 4 * bo, oOff + 4 * co, second);
    }, (off, len) => f32View(b, oOff + 4 * off, len).fill(0));
    return out;
  },
};

interface CpuBackend { data: { get(id: object): { values: Float32Array } }; makeTensorInfo(shape: number[], dtype: string, values: Float32Array): TensorInfo }
export const groupedGemmCpu: KernelConfig = {
  kernelName: GROUPED_GEMM,
  backendName: 'cpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const cpu = backend as unknown as CpuBackend;
    const ins = inputs as unknown as GroupedInputs;
    const p = planOf(ins, attrs as unknown as { mode: Mode; counts: number[] });
    const C = new Float32Array(p.outShape.reduce((x, y) => x * y, 1));
    let tmp = new Float32Array(0);
    forEachGroup(p, (tA, tB, M, N, K, ao, bo, co, second = false) => {
      const [x, y] = pairOf(ins, second);
      const A = cpu.data.get(x.dataId).values, B = cpu.data.get(y.dataId).values;
      if (!second) { jsGemm(tA, tB, M, N, K, A, ao, B, bo, C, co); return; }
      if (tmp.length < M * N) tmp = new Float32Array(M * N);
      jsGemm(tA, tB, M, N, K, A, ao, B, bo, tmp, 0);
      for (let i = 0; i < M * N; i++) C[co + i] += tmp[i];
    }, () => {});
    return cpu.makeTensorInfo(p.outShape, 'float32', C);
  },
};
