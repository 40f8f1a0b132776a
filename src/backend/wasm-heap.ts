// Low-level access to the wasm backend's heap: byte offsets of tensors, C++-level "alias" tensor ids
// that point inside another tensor's memory (zero-copy slices), scratch buffers, and the two C++
// kernels we drive directly (BatchMatMul's XNNPACK path and Transpose).
// Rule (native-gemm.md §6.1): any allocation may grow the heap and detach old views, so views are
// created on demand (`f32View`) right before use and never cached across a tfjs/malloc call.
import { tf, type BackendWasm, type TensorInfo } from './tfjs.ts';

type Cwrap = (...args: unknown[]) => void;
interface WasmModule {
  HEAPU8: Uint8Array;
  HEAPF32: Float32Array;
  _malloc(bytes: number): number;
  _free(ptr: number): void;
  cwrap(name: string, ret: null, args: string[]): Cwrap;
  tfjs: { registerTensor(id: number, size: number, offset: number): void; disposeData(id: number): void };
}
interface DataEntry { id: number; memoryOffset: number; shape: number[]; dtype: string; refCount: number }
/** The parts of BackendWasm's (untyped) internals we use. */
export interface WasmInternals {
  wasm: WasmModule;
  dataIdNextNumber: number;
  dataIdMap: { get(dataId: object): DataEntry; has(dataId: object): boolean };
  makeOutput(shape: number[], dtype: string): TensorInfo;
  disposeData(dataId: object, force?: boolean): boolean;
}

export function internals(backend: BackendWasm | object): WasmInternals {
  return backend as unknown as WasmInternals;
}

/** The active wasm backend's internals (throws if wasm is not active). */
export function activeWasm(): WasmInternals {
  if (tf.getBackend() !== 'wasm') throw new Error(`expected the wasm backend, active is '${tf.getBackend()}'`);
  return internals(tf.backend());
}

/** Byte offset of a tensor's data in the heap. */
export function offsetOf(b: WasmInternals, t: TensorInfo): number {
  return b.dataIdMap.get(t.dataId).memoryOffset;
}

/** A fresh Float32Array view of `len` floats at byte offset `off` (valid until the next allocation). */
export function f32View(b: WasmInternals, off: number, len: number): Float32Array {
  return new Float32Array(b.wasm.HEAPU8.buffer, off, len);
}

/** Register a C++-only tensor id aliasing `size` floats at byte offset `off`. Release it with `unalias`. */
export function alias(b: WasmInternals, off: number, size: number): number {
  const id = b.dataIdNextNumber++;
  b.wasm.tfjs.registerTensor(id, size, off);
  return id;
}
/** Forget an alias id; runs the C++ disposal callbacks (drops XNNPACK operators cached on it), frees nothing. */
export function unalias(b: WasmInternals, id: number): void {
  b.wasm.tfjs.disposeData(id);
}

interface Cpp { batchMatMul: Cwrap; transpose: Cwrap }
const cppCache = new WeakMap<object, Cpp>();
function cpp(b: WasmInternals): Cpp {
  let c = cppCache.get(b);
  if (!c) {
    const n = 'number', arr = 'array';
    c = {
      // (aId, aShape, aRank, bId, bShape, bRank, transposeA, transposeB, outId)
      batchMatMul: b.wasm.cwrap('BatchMatMul', null, [n, arr, n, n, arr, n, n, n, n]),
      // (xId, xShape, rank, dtype(0=float32), outId, perm, permLen)
      transpose: b.wasm.cwrap('Transpose', null, [n, arr, n, n, n, arr, n]),
    };
    cppCache.set(b, c);
  }
  return c;
}
const bytes = (xs: number[]) => new Uint8Array(new Int32Array(xs).buffer);

/** out[N,M] = in[M,N]ᵀ, both float32 at byte offsets (wasm C++ transpose). */
export function transposeAt(b: WasmInternals, inOff: number, outOff: number, M: number, N: number): void {
  if (M === 1 || N === 1) { b.wasm.HEAPU8.copyWithin(outOff, inOff, inOff + 4 * M * N); return; }
  const x = alias(b, inOff, M * N), o = alias(b, outOff, M * N);
  try { cpp(b).transpose(x, bytes([M, N]), 2, 0, o, bytes([1, 0]), 2); }
  finally { unalias(b, x); unalias(b, o); }
}

/** C[M,N] = A[M,K]·B[K,N] on XNNPACK (the fast path: no transposes, batch 1). */
export function xnnMatMulAt(b: WasmInternals, aOff: number, bOff: number, cOff: number, M: number, N: number, K: number): void {
  if (K === 0) { f32View(b, cOff, M * N).fill(0); return; }
  // Fresh alias ids each call: XNNPACK caches packed weights by B's id, so an id must never be reused
  // for different memory; unalias drops the cached operator.
  const ia = alias(b, aOff, M * K), ib = alias(b, bOff, K * N), ic = alias(b, cOff, M * N);
  try { cpp(b).batchMatMul(ia, bytes([1, M, K]), 3, ib, bytes([1, K, N]), 3, 0, 0, ic); }
  finally { unalias(b, ia); unalias(b, ib); unalias(b, ic); }
}

/** A scratch heap buffer; `free` it in a finally. Allocating may grow (detach) the heap. */
export function scratch(b: WasmInternals, floats: number): number {
  return b.wasm._malloc(Math.max(4, 4 * floats)) >>> 0;
}
export function freeScratch(b: WasmInternals, off: number): void { b.wasm._free(off); }
