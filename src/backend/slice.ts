// Non-copying Slice and axis-0 SplitV for wasm (tfjs-notes §8.2-3, P10): stock wasm `readSync`s
// the whole input on every call, so splitting [4096,128] 256 ways copied 256 × 2 MB. Here the
// slice is copied straight from the input's heap memory: O(output), not O(input).
import { tf, type KernelConfig, type KernelFunc, type TensorInfo } from './tfjs.ts';
import { internals, offsetOf } from './wasm-heap.ts';

const BYTES: Record<string, number> = { float32: 4, int32: 4, bool: 1 };

/** Copy the box [begin, begin+size) of x into a new wasm tensor, row by contiguous row. */
function sliceOnHeap(backend: object, x: TensorInfo, begin: number[], size: number[]): TensorInfo {
  const w = internals(backend);
  const out = w.makeOutput(size, x.dtype); // allocate first: may grow the heap
  const bpe = BYTES[x.dtype];
  const total = size.reduce((p, q) => p * q, 1);
  if (total === 0) return out;
  const heap = w.wasm.HEAPU8, xOff = offsetOf(w, x), oOff = offsetOf(w, out);
  const strides = tf.util.computeStrides(x.shape);
  const r = x.shape.length;
  // Merge the trailing dims that are taken whole into one contiguous run.
  let inner = r - 1;
  while (inner > 0 && size[inner] === x.shape[inner]) inner--;
  const run = size.slice(inner).reduce((p, q) => p * q, 1) * bpe;
  const outer = size.slice(0, inner);
  const nRuns = outer.reduce((p, q) => p * q, 1);
  const idx = new Array(inner).fill(0);
  for (let k = 0; k < nRuns; k++) {
    let src = begin[inner] * (inner < r - 1 ? strides[inner] : 1);
    for (let d = 0; d < inner; d++) src += (begin[d] + idx[d]) * strides[d];
    heap.copyWithin(oOff + k * run, xOff + src * bpe, xOff + src * bpe + run);
    for (let d = inner - 1; d >= 0; d--) { if (++idx[d] < outer[d]) break; idx[d] = 0; }
  }
  return out;
}

export function sliceWasm(orig: KernelConfig, enabled: () => boolean): KernelConfig {
  const kernelFunc: KernelFunc = (args) => {
    const x = (args.inputs as { x: TensorInfo }).x;
    if (!enabled() || !(x.dtype in BYTES) || x.shape.length === 0) return orig.kernelFunc(args);
    const { begin, size } = args.attrs as { begin: number | number[]; size: number | number[] };
    const [b, s] = tf.slice_util.parseSliceParams(x as tf.Tensor, begin, size);
    return sliceOnHeap(args.backend, x, b, s);
  };
  return { ...orig, kernelFunc };
}

export function splitVWasm(orig: KernelConfig, enabled: () => boolean): KernelConfig {
  const kernelFunc: KernelFunc = (args) => {
    const x = (args.inputs as { x: TensorInfo }).x;
    if (!enabled() || !(x.dtype in BYTES) || x.shape.length === 0) return orig.kernelFunc(args);
    const { numOrSizeSplits, axis } = args.attrs as { numOrSizeSplits: number | number[]; axis: number };
    const ax = tf.util.parseAxisParam(axis, x.shape)[0];
    const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, numOrSizeSplits, ax);
    const begin = new Array(x.shape.length).fill(0);
    return sizes.map((s) => {
      const size = x.shape.slice(); size[ax] = s;
      const part = sliceOnHeap(args.backend, x, begin.slice(), size);
      begin[ax] += s;
      return part;
    });
  };
  return { ...orig, kernelFunc };
}
