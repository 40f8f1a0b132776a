// Grouped GEMM for MoE experts: the token rows are sorted expert-major and `counts[e]` rows belong to
// expert e. One registered kernel ('UltramoeGroupedGemm') per backend loops the GEMM primitive over
// the groups, reading operands in place (wasm: heap offsets, no slices, no concat) and writing
// straight into one output. Forward-only: there is no gradient; the MoE layer writes its backward
// with groupedMatMulTransposed (input grad) and groupedWeightGrad (weight grad).
import { tf, type KernelConfig, type TensorInfo } from './tfjs.ts';
import { activeGemm, jsGemm } from './gemm.ts';
import { internals, offsetOf, f32View, alias, unalias, xnnMatMulWithB, transposeAt, scratch, freeScratch, type WasmInternals } from './wasm-heap.ts';

export const GROUPED_GEMM = 'UltramoeGroupedGemm';
/** nn: y_e = x_e·w_e   nt: dx_e = dy_e·w_eᵀ   tn: dw_e = x_eᵀ·dy_e */
type Mode = 'nn' | 'nt' | 'tn';
interface Plan { mode: Mode; counts: number[]; E: number; H: number; F: number; N: number; outShape: number[] }

/** y[N,F]: row block e of x[N,H] times w[e] ([E,H,F]); sum(counts) = N, counts.length = E. */
export function groupedMatMul(x: tf.Tensor2D, w: tf.Tensor3D, counts: number[]): tf.Tensor2D {
  return run('nn', x, w, counts) as tf.Tensor2D;
}
/** dx[N,H]: row block e of dy[N,F] times w[e]ᵀ (the input gradient of groupedMatMul). */
export function groupedMatMulTransposed(dy: tf.Tensor2D, w: tf.Tensor3D, counts: number[]): tf.Tensor2D {
  return run('nt', dy, w, counts) as tf.Tensor2D;
}
/** dw[E,H,F]: x_eᵀ·dy_e per expert (zeros for experts with no rows); the weight gradient. */
export function groupedWeightGrad(x: tf.Tensor2D, dy: tf.Tensor2D, counts: number[]): tf.Tensor3D {
  return run('tn', x, dy, counts) as tf.Tensor3D;
}

function plan(mode: Mode, a: tf.Tensor, b: tf.Tensor, counts: number[]): Plan {
  const what = { nn: 'groupedMatMul(x[N,H], w[E,H,F])', nt: 'groupedMatMulTransposed(dy[N,F], w[E,H,F])', tn: 'groupedWeightGrad(x[N,H], dy[N,F])' }[mode];
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

/** The per-group GEMM calls, shared by both backends; `gemm` gets element offsets. */
function forEachGroup(p: Plan, gemm: (tA: boolean, tB: boolean, M: number, N: number, K: number, a: number, b: number, c: number) => void, zero: (off: number, len: number) => void): void {
  const { H, F } = p;
  let row = 0;
  for (let e = 0; e < p.E; e++) {
    const r = p.counts[e];
    if (p.mode === 'nn') { if (r > 0) gemm(false, false, r, F, H, row * H, e * H * F, row * F); }
    else if (p.mode === 'nt') { if (r > 0) gemm(false, true, r, H, F, row * F, e * H * F, row * H); }
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

// Pure-wasm weight banks: XNNPACK packs the B operand of every call into its own layout (operator
// creation + packing ≈ 25–45 µs per expert at tiny sizes, more than the expert's GEMM itself). The
// forward (nn) and input-gradient (nt) calls read the same weight bank w [E,H,F] call after call, so
// each bank keeps one alias id per expert (nn: w_e; nt: w_eᵀ from a transposed copy) while its tensor
// is alive: the packing is paid once per weight version (tfjs tensors are immutable and an optimizer
// update assigns a new tensor), i.e. once per optimizer step rather than once per call, micro-batch
// and recompute replay. Banks whose tensor was disposed are released at the next call; at most
// CACHE_BYTES of packed copies are kept (a bank counts 3× its weight: XNNPACK's packed w_e, the
// transposed copy and its packing), least recently used banks first out.
interface Bank { dataId: object; off: number; E: number; H: number; F: number; ids: Int32Array; tIds: Int32Array; tBuf: number }
const banks: Bank[] = [];
const CACHE_BYTES = 384 * 2 ** 20;
const bankBytes = (k: { E: number; H: number; F: number }) => 12 * k.E * k.H * k.F;
let bankBackend: WasmInternals | null = null;

function releaseBank(b: WasmInternals, k: Bank): void {
  for (const id of k.ids) if (id) unalias(b, id);
  for (const id of k.tIds) if (id) unalias(b, id);
  if (k.tBuf) freeScratch(b, k.tBuf);
}
/** The bank of weight tensor `w` ([E,H,F] at byte offset `off`), released banks of disposed tensors dropped. */
function bankOf(b: WasmInternals, w: TensorInfo, off: number, E: number, H: number, F: number): Bank {
  if (bankBackend !== b) { banks.length = 0; bankBackend = b; }
  for (let i = banks.length - 1; i >= 0; i--) {
    const k = banks[i];
    if (!b.dataIdMap.has(k.dataId) || b.dataIdMap.get(k.dataId).memoryOffset !== k.off) { releaseBank(b, k); banks.splice(i, 1); }
  }
  let i = banks.findIndex((k) => k.dataId === w.dataId && k.E === E && k.H === H && k.F === F);
  if (i < 0) {
    let total = bankBytes({ E, H, F });
    for (const k of banks) total += bankBytes(k);
    while (banks.length && total > CACHE_BYTES) { const k = banks.shift()!; total -= bankBytes(k); releaseBank(b, k); }
    banks.push({ dataId: w.dataId, off, E, H, F, ids: new Int32Array(E), tIds: new Int32Array(E), tBuf: 0 });
    i = banks.length - 1;
  } else if (i !== banks.length - 1) banks.push(banks.splice(i, 1)[0]); // most recently used last
  return banks[i];
}
/** Forget every cached bank (tests; the packed copies are freed). */
export function releaseGroupedWeightCache(): void {
  if (bankBackend) for (const k of banks) releaseBank(bankBackend, k);
  banks.length = 0;
}

/** nn / nt on pure wasm with the bank's persistent per-expert ids. */
function runBanked(b: WasmInternals, p: Plan, w: TensorInfo, aOff: number, bOff: number, oOff: number): void {
  const { H, F } = p, k = bankOf(b, w, bOff, p.E, H, F);
  if (p.mode === 'nt' && !k.tBuf) k.tBuf = scratch(b, p.E * H * F);  // may grow the heap: offsets stay valid
  let row = 0;
  for (let e = 0; e < p.E; e++) {
    const r = p.counts[e];
    if (r > 0) {
      if (p.mode === 'nn') {
        if (!k.ids[e]) k.ids[e] = alias(b, bOff + 4 * e * H * F, H * F);
        xnnMatMulWithB(b, aOff + 4 * row * H, k.ids[e], oOff + 4 * row * F, r, F, H);        // [r,H]·[H,F]
      } else {
        if (!k.tIds[e]) {
          const t = k.tBuf + 4 * e * H * F;
          transposeAt(b, bOff + 4 * e * H * F, t, H, F);                                      // w_eᵀ [F,H]
          k.tIds[e] = alias(b, t, H * F);
        }
        xnnMatMulWithB(b, aOff + 4 * row * F, k.tIds[e], oOff + 4 * row * H, r, H, F);       // [r,F]·[F,H]
      }
    }
    row += r;
  }
}

export const groupedGemmWasm: KernelConfig = {
  kernelName: GROUPED_GEMM,
  backendName: 'wasm',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const b = internals(backend);
    const ins = inputs as unknown as { a: TensorInfo; b: TensorInfo };
    const p = planOf(ins, attrs as unknown as { mode: Mode; counts: number[] });
    const out = b.makeOutput(p.outShape, 'float32'); // allocate first: may grow the heap
    const aOff = offsetOf(b, ins.a), bOff = offsetOf(b, ins.b), oOff = offsetOf(b, out);
    const g = activeGemm();
    if (g.name === 'wasm' && p.mode !== 'tn') { runBanked(b, p, ins.b, aOff, bOff, oOff); return out; }
    forEachGroup(p, (tA, tB, M, N, K, ao, bo, co) => g.sgemm(b, tA, tB, M, N, K, aOff + 4 * ao, bOff + 4 * bo, oOff + 4 * co),
      (off, len) => f32View(b, oOff + 4 * off, len).fill(0));
    return out;
  },
};

interface CpuBackend { data: { get(id: object): { values: Float32Array } }; makeTensorInfo(shape: number[], dtype: string, values: Float32Array): TensorInfo }
export const groupedGemmCpu: KernelConfig = {
  kernelName: GROUPED_GEMM,
  backendName: 'cpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const cpu = backend as unknown as CpuBackend;
    const ins = inputs as unknown as { a: TensorInfo; b: TensorInfo };
    const p = planOf(ins, attrs as unknown as { mode: Mode; counts: number[] });
    const A = cpu.data.get(ins.a.dataId).values, B = cpu.data.get(ins.b.dataId).values;
    const C = new Float32Array(p.outShape.reduce((x, y) => x * y, 1));
    forEachGroup(p, (tA, tB, M, N, K, ao, bo, co) => jsGemm(tA, tB, M, N, K, A, ao, B, bo, C, co), () => {});
    return cpu.makeTensorInfo(p.outShape, 'float32', C);
  },
};
