// Fused AdamW and float64 sum of squares on the wasm backend's heap (docs/training.md "Optimizer").
//
// A tiny hand-encoded WebAssembly module (f32x4 SIMD) is instantiated with tfjs-wasm's own
// WebAssembly.Memory imported, so it reads and writes tensors where they live: no copies, and heap
// growth by tfjs is seen automatically (no cached views). One pass per parameter tensor replaces the
// ~14 tfjs kernels of the unfused update. The kernel performs, in float32, exactly the operations of
// the tfjs graph in src/train/optimizer.ts in the same order (IEEE +, −, ×, ÷, sqrt; wasm has no FMA
// contraction), so its results are bit-identical to that path:
//   g  = G·scale                         (or 0 when the parameter has no gradient)
//   m' = m·β1 + g·(1−β1)
//   v' = v·β2 + (g·g)·(1−β2)
//   p' = p·(1 − lr·wd) − ((m'/bc1) / (sqrt(v'/bc2) + ε))·lr
// Element tails (< 4) and engines without wasm SIMD use the same formula in JS with Math.fround after
// every operation (float32-exact for these operations).
//
// In place vs new buffers: m and v are updated in place when their buffer is not shared (refCount 1),
// otherwise written to a fresh tensor that is assigned. Parameters are ALWAYS written to a fresh tensor
// and assigned: caches keyed by a tensor's identity (XNNPACK operators packed per tensor id, the grouped
// GEMM weight banks of grouped.ts) rely on a parameter's memory never changing under the same dataId.
// The read and write still happen in the same pass, so the memory traffic is that of an in-place update.
import { tf, type TensorInfo } from './tfjs.ts';
import { activeWasm, offsetOf, f32View, type WasmInternals } from './wasm-heap.ts';

// ---------------------------------------------------------------------------------------------
// WebAssembly encoding
const leb = (n: number): number[] => { const o: number[] = []; do { let b = n & 0x7f; n >>>= 7; if (n) b |= 0x80; o.push(b); } while (n); return o; };
const section = (id: number, body: number[]) => [id, ...leb(body.length), ...body];
const vector = (items: number[][]) => [...leb(items.length), ...items.flat()];
const name = (s: string) => [...leb(s.length), ...Buffer.from(s, 'utf8')];
const I32 = 0x7f, F32 = 0x7d, F64 = 0x7c, V128 = 0x7b;
const get = (i: number) => [0x20, ...leb(i)], set = (i: number) => [0x21, ...leb(i)];
const simd = (op: number) => [0xfd, ...leb(op)];
const LOAD = [...simd(0x00), 4, 0], STORE = [...simd(0x0b), 4, 0];
const F32X4_SPLAT = simd(0x13), F32X4_SQRT = simd(0xe3), F32X4_ADD = simd(0xe4), F32X4_SUB = simd(0xe5), F32X4_MUL = simd(0xe6), F32X4_DIV = simd(0xe7);
const F64X2_PROMOTE_LOW = simd(0x5f), F64X2_ADD = simd(0xf0), F64X2_MUL = simd(0xf2), F64X2_LANE = (l: number) => [...simd(0x21), l];
const SHUFFLE_HIGH_HALF = [...simd(0x0d), 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7];
const I32_ADD = 0x6a, I32_GE_U = 0x4f, F64_ADD = 0xa0;
const BLOCK = [0x02, 0x40], LOOP = [0x03, 0x40], IF = [0x04, 0x40], ELSE = 0x05, END = 0x0b, BR = 0x0c, BR_IF = 0x0d;

// adamw(bytes, pIn, pOut, g, mIn, mOut, vIn, vOut, hasGrad : i32; scale, b1, omb1, b2, omb2, bc1, bc2, eps, df, lr : f32)
// over `bytes` bytes (a multiple of 16) of each operand; byte offsets into the shared memory.
const A = { bytes: 0, pIn: 1, pOut: 2, g: 3, mIn: 4, mOut: 5, vIn: 6, vOut: 7, hasGrad: 8, scalar0: 9 };
const SCALARS = ['scale', 'b1', 'omb1', 'b2', 'omb2', 'bc1', 'bc2', 'eps', 'df', 'lr'] as const;
const S = Object.fromEntries(SCALARS.map((k, j) => [k, 20 + j])) as Record<typeof SCALARS[number], number>; // v128 splats
const L = { i: 19, gv: 30, m1: 31, v1: 32 };

function adamwBody(): number[] {
  const at = (base: number) => [...get(base), ...get(L.i), I32_ADD];
  const loop = (hasGrad: boolean): number[] => [
    ...BLOCK, ...LOOP,
    ...get(L.i), ...get(A.bytes), I32_GE_U, BR_IF, 1,
    ...(hasGrad ? [...at(A.g), ...LOAD, ...get(S.scale), ...F32X4_MUL, ...set(L.gv)] : []), // g (else gv stays 0)
    ...at(A.mIn), ...LOAD, ...get(S.b1), ...F32X4_MUL, ...get(L.gv), ...get(S.omb1), ...F32X4_MUL, ...F32X4_ADD, ...set(L.m1),
    ...at(A.mOut), ...get(L.m1), ...STORE,
    ...at(A.vIn), ...LOAD, ...get(S.b2), ...F32X4_MUL, ...get(L.gv), ...get(L.gv), ...F32X4_MUL, ...get(S.omb2), ...F32X4_MUL, ...F32X4_ADD, ...set(L.v1),
    ...at(A.vOut), ...get(L.v1), ...STORE,
    ...at(A.pOut),
    ...at(A.pIn), ...LOAD, ...get(S.df), ...F32X4_MUL,
    ...get(L.m1), ...get(S.bc1), ...F32X4_DIV, ...get(L.v1), ...get(S.bc2), ...F32X4_DIV, ...F32X4_SQRT, ...get(S.eps), ...F32X4_ADD, ...F32X4_DIV,
    ...get(S.lr), ...F32X4_MUL, ...F32X4_SUB, ...STORE,
    ...get(L.i), 0x41, 16, I32_ADD, ...set(L.i), BR, 0, END, END,
  ];
  const code: number[] = [];
  SCALARS.forEach((_, j) => code.push(...get(A.scalar0 + j), ...F32X4_SPLAT, ...set(20 + j)));
  code.push(...get(A.hasGrad), ...IF, ...loop(true), ELSE, ...loop(false), END, END);
  return [...vector([[1, I32], [10 + 3, V128]]), ...code]; // locals: i; 10 splats, gv, m1, v1
}

// sumsq(ptr, bytes : i32) -> f64: Σ x² over `bytes` (a multiple of 16) bytes of float32, squares and
// sums in float64 (four lanes: two f64x2 accumulators).
function sumsqBody(): number[] {
  const P = 0, N = 1, i = 2, acc0 = 3, acc1 = 4, x = 5;
  const code = [
    ...BLOCK, ...LOOP,
    ...get(i), ...get(N), I32_GE_U, BR_IF, 1,
    ...get(P), ...get(i), I32_ADD, ...LOAD, ...set(x),
    ...get(acc0), ...get(x), ...F64X2_PROMOTE_LOW, 0x22, ...leb(6), ...get(6), ...F64X2_MUL, ...F64X2_ADD, ...set(acc0),
    ...get(acc1), ...get(x), ...get(x), ...SHUFFLE_HIGH_HALF, ...F64X2_PROMOTE_LOW, 0x22, ...leb(6), ...get(6), ...F64X2_MUL, ...F64X2_ADD, ...set(acc1),
    ...get(i), 0x41, 16, I32_ADD, ...set(i), BR, 0, END, END,
    ...get(acc0), ...F64X2_LANE(0), ...get(acc0), ...F64X2_LANE(1), F64_ADD,
    ...get(acc1), ...F64X2_LANE(0), ...get(acc1), ...F64X2_LANE(1), F64_ADD, F64_ADD,
    END,
  ];
  return [...vector([[1, I32], [4, V128]]), ...code]; // locals: i; acc0, acc1, x, tmp
}

function moduleBytes(): Uint8Array {
  const fn = (body: number[]) => [...leb(body.length), ...body];
  return new Uint8Array([0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
    ...section(1, vector([
      [0x60, ...leb(9 + 10), ...Array(9).fill(I32), ...Array(10).fill(F32), 0],
      [0x60, 2, I32, I32, 1, F64],
    ])),
    ...section(2, vector([[...name('env'), ...name('memory'), 0x02, 0x00, 0x00]])), // memory, min 0 pages, no max
    ...section(3, vector([[0], [1]])),
    ...section(7, vector([[...name('adamw'), 0x00, 0], [...name('sumsq'), 0x00, 1]])),
    ...section(10, vector([fn(adamwBody()), fn(sumsqBody())])),
  ]);
}

// ---------------------------------------------------------------------------------------------
// Instantiation (one instance per tfjs-wasm Memory; `null` = no wasm SIMD here, use the JS loops)
interface Kernels {
  adamw(bytes: number, pIn: number, pOut: number, g: number, mIn: number, mOut: number, vIn: number, vOut: number, hasGrad: number,
    scale: number, b1: number, omb1: number, b2: number, omb2: number, bc1: number, bc2: number, eps: number, df: number, lr: number): void;
  sumsq(ptr: number, bytes: number): number;
}
// (the project's lib setting has no WebAssembly typings: a minimal local type)
interface WA { validate(b: Uint8Array): boolean; Module: new (b: Uint8Array) => object; Instance: new (m: object, imports: object) => { exports: unknown } }
const WebAsm = (globalThis as unknown as { WebAssembly: WA }).WebAssembly;
const instances = new WeakMap<object, Kernels | null>();
let compiled: object | null | undefined;
/** Set by tests to exercise the JS fallback on the wasm backend. */
export const fusedOptions = { simd: true };

function kernels(b: WasmInternals): Kernels | null {
  if (!fusedOptions.simd) return null;
  const memory = (b.wasm as unknown as { asm?: { memory?: object } }).asm?.memory;
  if (!memory) return null;
  if (instances.has(memory)) return instances.get(memory)!;
  if (compiled === undefined) {
    const bytes = moduleBytes();
    compiled = WebAsm && WebAsm.validate(bytes) ? new WebAsm.Module(bytes) : null;
  }
  let k: Kernels | null = null;
  if (compiled) {
    try { k = new WebAsm.Instance(compiled, { env: { memory } }).exports as Kernels; } catch { k = null; }
  }
  instances.set(memory, k);
  return k;
}

/** Whether the fused kernels run on wasm SIMD here (false: scalar JS loops on heap views). */
export function fusedSimdAvailable(): boolean {
  return tf.getBackend() === 'wasm' && kernels(activeWasm()) !== null;
}

// ---------------------------------------------------------------------------------------------
// Public API (wasm backend only)
export interface AdamWScalars {
  beta1: number; beta2: number; eps: number;
  /** 1 − β1^t and 1 − β2^t */
  bc1: number; bc2: number;
  lr: number;
  /** weight decay of this parameter's group (0 = none) */
  weightDecay: number;
  /** gradient multiplier (clipping); 1 = none */
  gradScale: number;
}

const fr = Math.fround;

/** JS reference/fallback on heap views, element range [from, to): float32-exact, same operation order. */
function adamwJs(b: WasmInternals, n: number, from: number, off: { pIn: number; pOut: number; g: number; mIn: number; mOut: number; vIn: number; vOut: number },
  c: { scale: number; b1: number; omb1: number; b2: number; omb2: number; bc1: number; bc2: number; eps: number; df: number; lr: number }): void {
  const view = (o: number) => f32View(b, o, n);
  const P = view(off.pIn), PO = view(off.pOut), G = off.g ? view(off.g) : null, M = view(off.mIn), MO = view(off.mOut), V = view(off.vIn), VO = view(off.vOut);
  const { scale, b1, omb1, b2, omb2, bc1, bc2, eps, df, lr } = c;
  for (let i = from; i < n; i++) {
    const g = G ? fr(G[i] * scale) : 0;
    const m1 = fr(fr(M[i] * b1) + fr(g * omb1));
    const v1 = fr(fr(V[i] * b2) + fr(fr(g * g) * omb2));
    const upd = fr(fr(m1 / bc1) / fr(fr(Math.sqrt(fr(v1 / bc2))) + eps));
    PO[i] = fr(P[i] * df) - fr(upd * lr);
    MO[i] = m1;
    VO[i] = v1;
  }
}

/** A fresh float32 output of `shape` on the wasm backend (allocating may grow the heap). */
function newOutput(b: WasmInternals, shape: number[]): TensorInfo {
  return b.makeOutput(shape, 'float32');
}
const backendRefCount = (t: tf.Tensor) => (tf.backend() as unknown as { refCount(d: object): number }).refCount(t.dataId);

/**
 * One fused AdamW update of parameter `p` with gradient `g` (undefined: a zero gradient) and moments
 * `m`, `v` (wasm backend). Bit-identical to the tfjs formulation in src/train/optimizer.ts.
 */
export function fusedAdamWUpdate(p: tf.Variable, g: tf.Tensor | undefined, m: tf.Variable, v: tf.Variable, s: AdamWScalars): void {
  const b = activeWasm();
  const n = p.size;
  if (m.size !== n || v.size !== n || (g && g.size !== n)) throw new Error(`fusedAdamWUpdate: sizes differ (p ${n}, m ${m.size}, v ${v.size}, g ${g?.size})`);
  if (p.dtype !== 'float32' || (g && g.dtype !== 'float32')) throw new Error('fusedAdamWUpdate: float32 only');
  // allocate every output first (may grow the heap), then read offsets
  const pOut = newOutput(b, p.shape);
  const mOut = backendRefCount(m) > 1 ? newOutput(b, m.shape) : null;
  const vOut = backendRefCount(v) > 1 ? newOutput(b, v.shape) : null;
  const off = {
    pIn: offsetOf(b, p), pOut: offsetOf(b, pOut), g: g ? offsetOf(b, g) : 0,
    mIn: offsetOf(b, m), mOut: mOut ? offsetOf(b, mOut) : offsetOf(b, m),
    vIn: offsetOf(b, v), vOut: vOut ? offsetOf(b, vOut) : offsetOf(b, v),
  };
  const c = {
    scale: fr(s.gradScale), b1: fr(s.beta1), omb1: fr(1 - s.beta1), b2: fr(s.beta2), omb2: fr(1 - s.beta2),
    bc1: fr(s.bc1), bc2: fr(s.bc2), eps: fr(s.eps), df: fr(1 - s.lr * s.weightDecay), lr: fr(s.lr),
  };
  const k = kernels(b);
  const bulk = k ? n - (n % 4) : 0;
  if (bulk > 0) {
    k!.adamw(4 * bulk, off.pIn, off.pOut, off.g, off.mIn, off.mOut, off.vIn, off.vOut, g ? 1 : 0,
      c.scale, c.b1, c.omb1, c.b2, c.omb2, c.bc1, c.bc2, c.eps, c.df, c.lr);
  }
  if (bulk < n) adamwJs(b, n, bulk, off, c);
  const adopt = (target: tf.Variable, info: TensorInfo) => {
    const t = tf.engine().makeTensorFromTensorInfo(info);
    target.assign(t);
    t.dispose();
  };
  adopt(p, pOut);
  if (mOut) adopt(m, mOut);
  if (vOut) adopt(v, vOut);
}

/** Σ x² of a float32 tensor on the wasm backend, squares and sum in float64 (one pass, no copy). */
export function sumSquaresF64(t: tf.Tensor): number {
  if (t.dtype !== 'float32') throw new Error('sumSquaresF64: float32 only');
  const n = t.size;
  if (n === 0) return 0;
  const b = activeWasm(), off = offsetOf(b, t), k = kernels(b);
  const bulk = k ? n - (n % 4) : 0;
  let s = bulk > 0 ? k!.sumsq(off, 4 * bulk) : 0;
  if (bulk < n) {
    const x = f32View(b, off, n);
    for (let i = bulk; i < n; i++) s += x[i] * x[i];
  }
  return s;
}
