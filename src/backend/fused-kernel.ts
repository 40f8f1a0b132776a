// Registering fused element-wise kernels (fused-norm.ts, fused-swiglu.ts) on the wasm and cpu
// backends from one description: output shapes, a JS implementation on typed arrays (cpu, and wasm
// when SIMD is unavailable or a row length is not a multiple of 4) and an optional wasm SIMD
// implementation on heap byte offsets. Outputs are allocated before any heap view or offset is
// read (allocation may grow and detach the heap: native-gemm.md §6.1).
import { tf, type KernelConfig, type TensorInfo } from './tfjs.ts';
import { internals, offsetOf, f32View, type WasmInternals } from './wasm-heap.ts';

export type Inputs = Record<string, TensorInfo | undefined>;

export interface FusedSpec<A> {
  name: string;
  /** Output shapes (all float32). */
  outShapes(inputs: Inputs, attrs: A): number[][];
  /** Reference implementation on flat arrays (a missing optional input is undefined; int32 inputs
   *  are in `ints`, not `ins`). */
  js(ins: Record<string, Float32Array | undefined>, outs: Float32Array[], inputs: Inputs, attrs: A, ints: Record<string, Int32Array>): void;
  /** wasm SIMD implementation on byte offsets (0 for a missing input); false = not applicable, use js. */
  simd?(b: WasmInternals, ins: Record<string, number>, outs: number[], inputs: Inputs, attrs: A): boolean;
}

const size = (s: number[]) => s.reduce((a, b) => a * b, 1);

function wasmKernel<A>(spec: FusedSpec<A>): KernelConfig {
  return {
    kernelName: spec.name, backendName: 'wasm',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = internals(backend), ins = inputs as unknown as Inputs, a = attrs as unknown as A;
      const shapes = spec.outShapes(ins, a);
      const outs = shapes.map((s) => b.makeOutput(s, 'float32')); // allocate first
      const offs = outs.map((o) => offsetOf(b, o));
      const inOffs: Record<string, number> = {};
      for (const [k, t] of Object.entries(ins)) inOffs[k] = t ? offsetOf(b, t) : 0;
      if (!spec.simd?.(b, inOffs, offs, ins, a)) {
        const views: Record<string, Float32Array | undefined> = {}, ints: Record<string, Int32Array> = {};
        for (const [k, t] of Object.entries(ins)) {
          if (t?.dtype === 'int32') ints[k] = new Int32Array(b.wasm.HEAPU8.buffer, inOffs[k], size(t.shape));
          else views[k] = t ? f32View(b, inOffs[k], size(t.shape)) : undefined;
        }
        spec.js(views, offs.map((o, i) => f32View(b, o, size(shapes[i]))), ins, a, ints);
      }
      return outs;
    },
  };
}

interface CpuBackend { data: { get(id: object): { values: Float32Array } }; makeTensorInfo(shape: number[], dtype: string, values: Float32Array): TensorInfo }
function cpuKernel<A>(spec: FusedSpec<A>): KernelConfig {
  return {
    kernelName: spec.name, backendName: 'cpu',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const cpu = backend as unknown as CpuBackend, ins = inputs as unknown as Inputs, a = attrs as unknown as A;
      const shapes = spec.outShapes(ins, a);
      const outs = shapes.map((s) => new Float32Array(size(s)));
      const views: Record<string, Float32Array | undefined> = {}, ints: Record<string, Int32Array> = {};
      for (const [k, t] of Object.entries(ins)) {
        if (t?.dtype === 'int32') ints[k] = cpu.data.get(t.dataId).values as unknown as Int32Array;
        else views[k] = t ? cpu.data.get(t.dataId).values : undefined;
      }
      spec.js(views, outs, ins, a, ints);
      return outs.map((o, i) => cpu.makeTensorInfo(shapes[i], 'float32', o));
    },
  };
}

/** The kernel configs of `spec` for wasm and cpu (registered by register.ts). */
export function fusedKernels<A>(spec: FusedSpec<A>): KernelConfig[] {
  return [wasmKernel(spec), cpuKernel(spec)];
}

/** Whether the active backend has the fused kernel (else callers use stock ops). */
export function hasKernel(name: string): boolean {
  return tf.getKernel(name, tf.getBackend()) !== undefined;
}

/** Run a fused kernel; `inputs` may omit optional entries. */
export function runFused(name: string, inputs: Record<string, tf.Tensor | undefined>, attrs: object): tf.Tensor[] {
  const ins: Record<string, tf.Tensor> = {};
  for (const [k, t] of Object.entries(inputs)) if (t) ins[k] = t;
  for (const t of Object.values(ins)) if (t.dtype !== 'float32' && t.dtype !== 'int32') throw new Error(`${name}: float32 (or int32 index) inputs only`);
  return tf.engine().runKernel(name, ins as unknown as tf.NamedTensorMap, attrs as unknown as tf.NamedAttrMap) as unknown as tf.Tensor[];
}
