// GatherV2 override for wasm: stock copies element by element in C++ (~60 ns per element: 61-73 ms
// for 4096 rows of [4096,256], tfjs-notes §3), which makes MoE token dispatch (permute = gather
// rows) slow. Here each gathered slice is one contiguous heap copy.
import { tf, type KernelConfig, type KernelFunc, type TensorInfo } from './tfjs.ts';
import { internals, offsetOf } from './wasm-heap.ts';

const BYTES: Record<string, number> = { float32: 4, int32: 4, bool: 1 };

export function gatherV2Wasm(orig: KernelConfig, enabled: () => boolean): KernelConfig {
  const kernelFunc: KernelFunc = (args) => {
    const { x, indices } = args.inputs as { x: TensorInfo; indices: TensorInfo };
    const { axis, batchDims } = args.attrs as { axis: number; batchDims: number };
    if (!enabled() || !(x.dtype in BYTES) || indices.dtype !== 'int32') return orig.kernelFunc(args);
    const ax = tf.util.parseAxisParam(axis, x.shape)[0];
    const info = tf.backend_util.segment_util.collectGatherOpShapeInfo(x as tf.Tensor, indices as tf.Tensor, ax, batchDims);
    const { batchSize, outerSize, dimSize, sliceSize } = info;
    const w = internals(args.backend);
    const nIdx = tf.util.sizeFromShape(indices.shape), perBatch = batchSize > 0 ? nIdx / batchSize : 0;
    const out = w.makeOutput(info.outputShape, x.dtype); // allocate first: may grow the heap
    if (tf.util.sizeFromShape(info.outputShape) === 0) return out;
    const idx = new Int32Array(w.wasm.HEAPU8.buffer, offsetOf(w, indices), nIdx);
    for (let i = 0; i < nIdx; i++) {
      if (!(idx[i] >= 0 && idx[i] < dimSize)) { w.disposeData(out.dataId); throw new Error(`GatherV2: the index value ${idx[i]} is not in [0, ${dimSize - 1}]`); }
    }
    const bpe = BYTES[x.dtype], heap = w.wasm.HEAPU8, xOff = offsetOf(w, x), oOff = offsetOf(w, out);
    const run = sliceSize * bpe;
    let dst = oOff;
    for (let b = 0; b < batchSize; b++) {
      for (let o = 0; o < outerSize; o++) {
        const base = xOff + (b * outerSize + o) * dimSize * run;
        for (let j = 0; j < perBatch; j++, dst += run) {
          const src = base + idx[b * perBatch + j] * run;
          if (run <= 32) for (let k = 0; k < run; k++) heap[dst + k] = heap[src + k]; // tiny slices: avoid call overhead
          else heap.copyWithin(dst, src, src + run);
        }
      }
    }
    return out;
  };
  return { ...orig, kernelFunc };
}

type Arr = Float32Array | Int32Array | Uint8Array;
interface CpuBackend { data: { get(id: object): { values: Arr } }; makeTensorInfo(shape: number[], dtype: string, values: Arr): TensorInfo }

/** The same on cpu (stock goes through a generic per-element TensorBuffer loop, ~118 ms for 4096 rows of 256). */
export function gatherV2Cpu(orig: KernelConfig, enabled: () => boolean): KernelConfig {
  const kernelFunc: KernelFunc = (args) => {
    const { x, indices } = args.inputs as { x: TensorInfo; indices: TensorInfo };
    const { axis, batchDims } = args.attrs as { axis: number; batchDims: number };
    if (!enabled() || !(x.dtype in BYTES)) return orig.kernelFunc(args);
    const ax = tf.util.parseAxisParam(axis, x.shape)[0];
    const info = tf.backend_util.segment_util.collectGatherOpShapeInfo(x as tf.Tensor, indices as tf.Tensor, ax, batchDims);
    const { batchSize, outerSize, dimSize, sliceSize } = info;
    const cpu = args.backend as unknown as CpuBackend;
    const xs = cpu.data.get(x.dataId).values, idx = cpu.data.get(indices.dataId).values;
    const nIdx = idx.length, perBatch = batchSize > 0 ? nIdx / batchSize : 0;
    for (let i = 0; i < nIdx; i++) {
      if (!(idx[i] >= 0 && idx[i] < dimSize)) throw new Error(`GatherV2: the index value ${idx[i]} is not in [0, ${dimSize - 1}]`);
    }
    const out = new (xs.constructor as new (n: number) => Arr)(tf.util.sizeFromShape(info.outputShape));
    let dst = 0;
    for (let b = 0; b < batchSize; b++) {
      for (let o = 0; o < outerSize; o++) {
        const base = (b * outerSize + o) * dimSize * sliceSize;
        for (let j = 0; j < perBatch; j++, dst += sliceSize) {
          const src = base + idx[b * perBatch + j] * sliceSize;
          if (sliceSize <= 8) for (let k = 0; k < sliceSize; k++) out[dst + k] = xs[src + k];
          else out.set(xs.subarray(src, src + sliceSize), dst);
        }
      }
    }
    return cpu.makeTensorInfo(info.outputShape, x.dtype, out);
  };
  return { ...orig, kernelFunc };
}
