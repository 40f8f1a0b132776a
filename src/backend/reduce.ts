// Small JS kernels over heap views / cpu arrays that fix missing, slow or wrong stock kernels:
// - UnsortedSegmentSum: missing on wasm (so tf.grad of tf.gather throws, P4) and O(segments·N·D)
//   on cpu (P5). Here one O(N·D) pass on both backends.
// - OneHot on wasm ignores dtype and truncates on/off values to int (P11).
// - Sum over leading axes on wasm (bias gradients) transposes first; here a column sum, or the
//   GEMM provider's colSum (OpenBLAS: ones·X).
import { tf, type KernelConfig, type KernelFunc, type TensorInfo } from './tfjs.ts';
import { activeGemm } from './gemm.ts';
import { internals, offsetOf } from './wasm-heap.ts';

type Arr = Float32Array | Int32Array;
const prod = (xs: number[]) => xs.reduce((p, q) => p * q, 1);

function segmentSum(x: Arr, ids: Int32Array, out: Arr, numSegments: number, D: number): void {
  out.fill(0);
  for (let i = 0; i < ids.length; i++) {
    const s = ids[i];
    if (s < 0 || s >= numSegments) continue; // TF semantics: dropped
    const xo = i * D, oo = s * D;
    for (let j = 0; j < D; j++) out[oo + j] += x[xo + j];
  }
}
function segArgs(args: Parameters<KernelFunc>[0]) {
  const { x, segmentIds } = args.inputs as { x: TensorInfo; segmentIds: TensorInfo };
  const numSegments = (args.attrs as { numSegments: number }).numSegments;
  const nIds = prod(segmentIds.shape);
  const D = nIds === 0 ? prod(x.shape.slice(segmentIds.shape.length)) : prod(x.shape) / nIds;
  return { x, segmentIds, numSegments, D, outShape: [numSegments, ...x.shape.slice(segmentIds.shape.length)] };
}

export const unsortedSegmentSumWasm: KernelConfig = {
  kernelName: 'UnsortedSegmentSum', backendName: 'wasm',
  kernelFunc: (args) => {
    const { x, segmentIds, numSegments, D, outShape } = segArgs(args);
    const w = internals(args.backend);
    const out = w.makeOutput(outShape, x.dtype); // allocate first: may grow the heap
    const buf = w.wasm.HEAPU8.buffer, nx = prod(x.shape), nIds = prod(segmentIds.shape);
    const View: new (b: ArrayBufferLike, o: number, n: number) => Arr = x.dtype === 'int32' ? Int32Array : Float32Array;
    segmentSum(new View(buf, offsetOf(w, x), nx), new Int32Array(buf, offsetOf(w, segmentIds), nIds),
      new View(buf, offsetOf(w, out), numSegments * D), numSegments, D);
    return out;
  },
};

interface CpuBackend { data: { get(id: object): { values: Arr } }; makeTensorInfo(shape: number[], dtype: string, values: Arr): TensorInfo }
export const unsortedSegmentSumCpu: KernelConfig = {
  kernelName: 'UnsortedSegmentSum', backendName: 'cpu',
  kernelFunc: (args) => {
    const { x, segmentIds, numSegments, D, outShape } = segArgs(args);
    const cpu = args.backend as unknown as CpuBackend;
    const out = x.dtype === 'int32' ? new Int32Array(numSegments * D) : new Float32Array(numSegments * D);
    segmentSum(cpu.data.get(x.dataId).values, Int32Array.from(cpu.data.get(segmentIds.dataId).values), out, numSegments, D);
    return cpu.makeTensorInfo(outShape, x.dtype, out);
  },
};

export function oneHotWasm(orig: KernelConfig, enabled: () => boolean): KernelConfig {
  const kernelFunc: KernelFunc = (args) => {
    const { indices } = args.inputs as { indices: TensorInfo };
    const { depth, onValue, offValue, dtype } = args.attrs as { depth: number; onValue: number; offValue: number; dtype: string };
    if (!enabled() || (dtype !== 'float32' && dtype !== 'int32') || indices.dtype !== 'int32') return orig.kernelFunc(args);
    const w = internals(args.backend);
    const out = w.makeOutput([...indices.shape, depth], dtype);
    const n = prod(indices.shape), buf = w.wasm.HEAPU8.buffer;
    const idx = new Int32Array(buf, offsetOf(w, indices), n);
    const o = dtype === 'int32' ? new Int32Array(buf, offsetOf(w, out), n * depth) : new Float32Array(buf, offsetOf(w, out), n * depth);
    o.fill(offValue);
    for (let i = 0; i < n; i++) if (idx[i] >= 0 && idx[i] < depth) o[i * depth + idx[i]] = onValue;
    return out;
  };
  return { ...orig, kernelFunc };
}

export function sumWasm(orig: KernelConfig, enabled: () => boolean): KernelConfig {
  const kernelFunc: KernelFunc = (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    const { axis, keepDims } = args.attrs as { axis: number | number[]; keepDims: boolean };
    if (!enabled() || x.dtype !== 'float32') return orig.kernelFunc(args);
    const axes = tf.util.parseAxisParam(axis, x.shape).sort((p, q) => p - q);
    const k = axes.length;
    // Only reductions over leading axes 0..k-1 that leave something behind.
    if (k === 0 || k >= x.shape.length || axes.some((a, i) => a !== i)) return orig.kernelFunc(args);
    const R = prod(x.shape.slice(0, k)), D = prod(x.shape.slice(k));
    const outShape = keepDims ? [...Array(k).fill(1), ...x.shape.slice(k)] : x.shape.slice(k);
    const w = internals(args.backend);
    const out = w.makeOutput(outShape, 'float32');
    const g = activeGemm();
    if (g.colSum && R > 1) { g.colSum(w, R, D, offsetOf(w, x), offsetOf(w, out)); return out; }
    const buf = w.wasm.HEAPU8.buffer;
    const xs = new Float32Array(buf, offsetOf(w, x), R * D), acc = new Float64Array(D);
    for (let r = 0; r < R; r++) { const o = r * D; for (let j = 0; j < D; j++) acc[j] += xs[o + j]; }
    new Float32Array(buf, offsetOf(w, out), D).set(acc);
    return out;
  };
  return { ...orig, kernelFunc };
}
