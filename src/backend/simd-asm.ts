// A minimal WebAssembly (SIMD) assembler for the fused element-wise kernels (fused-*.ts): enough
// structured helpers to write row loops over float32 tensors in the wasm backend's heap, and one
// instantiation per tfjs-wasm WebAssembly.Memory (imported, so the kernels read and write tensors in
// place and see heap growth automatically). Same approach as adamw.ts, factored for several kernels.
// All addresses are byte offsets; vector loads/stores are f32x4 (16 bytes, no alignment needed).
import type { WasmInternals } from './wasm-heap.ts';

export type Code = number[];

const uleb = (n: number): Code => { const o: Code = []; do { let b = n & 0x7f; n >>>= 7; if (n) b |= 0x80; o.push(b); } while (n); return o; };
const sleb = (n: number): Code => {
  const o: Code = [];
  for (;;) {
    const b = n & 0x7f; n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) { o.push(b); return o; }
    o.push(b | 0x80);
  }
};
const vec = (items: Code[]): Code => [...uleb(items.length), ...items.flat()];
const str = (s: string): Code => [...uleb(s.length), ...Buffer.from(s, 'utf8')];
const simd = (op: number): Code => [0xfd, ...uleb(op)];

export const I32 = 0x7f, F32 = 0x7d, V128 = 0x7b;

/** Instructions (each returns the bytes; compose with spread). */
export const op = {
  get: (i: number): Code => [0x20, ...uleb(i)],
  set: (i: number): Code => [0x21, ...uleb(i)],
  i32: (n: number): Code => [0x41, ...sleb(n)],
  f32: (x: number): Code => [0x43, ...new Uint8Array(new Float32Array([x]).buffer)],
  iadd: [0x6a], isub: [0x6b], imul: [0x6c], ige: [0x4f],
  fadd: [0x92], fsub: [0x93], fmul: [0x94], fdiv: [0x95], fsqrt: [0x91], fconv: [0xb3], // f32.convert_i32_u
  fload: [0x2a, 2, 0], fstore: [0x38, 2, 0],
  vload: [...simd(0x00), 4, 0], vstore: [...simd(0x0b), 4, 0],
  vzero: [...simd(0x0c), ...new Array(16).fill(0)],
  splat: simd(0x13), vadd: simd(0xe4), vsub: simd(0xe5), vmul: simd(0xe6),
  lane: (l: number): Code => [...simd(0x1f), l],
};

/** Σ of the four lanes of the v128 on the stack ((l0 + l1) + (l2 + l3)), via local `tmp` (v128). */
export function hsum(tmp: number): Code {
  return [0x22, ...uleb(tmp), ...op.lane(0), ...op.get(tmp), ...op.lane(1), ...op.fadd,
    ...op.get(tmp), ...op.lane(2), ...op.get(tmp), ...op.lane(3), ...op.fadd, ...op.fadd];
}

/** for (i = from; i < to; i += step) body — i32 local `i`; `from`/`to` are code that push an i32. */
export function loop(i: number, from: Code, to: Code, step: number, body: Code): Code {
  return [...from, ...op.set(i), 0x02, 0x40, 0x03, 0x40,
    ...op.get(i), ...to, ...op.ige, 0x0d, 1,
    ...body,
    ...op.get(i), ...op.i32(step), ...op.iadd, ...op.set(i), 0x0c, 0, 0x0b, 0x0b];
}

/** base + i (both i32 locals). */
export const at = (base: number, i: number): Code => [...op.get(base), ...op.get(i), ...op.iadd];

export interface FnDef {
  name: string;
  params: number[];          // value types
  locals: number[];          // value types of the extra locals (indices follow the params)
  body: Code;                // without the final `end`
}

/** Encode a module importing env.memory and exporting `fns` (no results). */
export function moduleBytes(fns: FnDef[]): Uint8Array {
  const types = fns.map((f) => [0x60, ...vec(f.params.map((t) => [t])), 0]);
  const localDecl = (ls: number[]) => { // run-length groups
    const groups: Code[] = [];
    for (let k = 0; k < ls.length;) { let n = 1; while (k + n < ls.length && ls[k + n] === ls[k]) n++; groups.push([...uleb(n), ls[k]]); k += n; }
    return vec(groups);
  };
  const bodies = fns.map((f) => { const b = [...localDecl(f.locals), ...f.body, 0x0b]; return [...uleb(b.length), ...b]; });
  const section = (id: number, body: Code) => [id, ...uleb(body.length), ...body];
  return new Uint8Array([0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
    ...section(1, vec(types)),
    ...section(2, vec([[...str('env'), ...str('memory'), 0x02, 0x00, 0x00]])),
    ...section(3, vec(fns.map((_, k) => uleb(k)))),
    ...section(7, vec(fns.map((f, k) => [...str(f.name), 0x00, ...uleb(k)]))),
    ...section(10, vec(bodies)),
  ]);
}

// (the project's lib setting has no WebAssembly typings: a minimal local type)
interface WA { validate(b: Uint8Array): boolean; Module: new (b: Uint8Array) => object; Instance: new (m: object, imports: object) => { exports: unknown } }
const WebAsm = (globalThis as unknown as { WebAssembly?: WA }).WebAssembly;

/** Switch for tests: false makes `instantiate` return null (the JS fallbacks run). */
export const simdOptions = { enabled: true };

/**
 * A lazily compiled module instantiated once per tfjs-wasm memory; null when wasm SIMD is not
 * available here (or disabled), in which case callers use their JS loops.
 */
export function simdModule<T>(fns: () => FnDef[]): (b: WasmInternals) => T | null {
  let compiled: object | null | undefined;
  const instances = new WeakMap<object, T | null>();
  return (b) => {
    if (!simdOptions.enabled) return null;
    const memory = (b.wasm as unknown as { asm?: { memory?: object } }).asm?.memory;
    if (!memory || !WebAsm) return null;
    if (instances.has(memory)) return instances.get(memory)!;
    if (compiled === undefined) {
      const bytes = moduleBytes(fns());
      compiled = WebAsm.validate(bytes) ? new WebAsm.Module(bytes) : null;
    }
    let inst: T | null = null;
    if (compiled) { try { inst = new WebAsm.Instance(compiled, { env: { memory } }).exports as T; } catch { inst = null; } }
    instances.set(memory, inst);
    return inst;
  };
}
