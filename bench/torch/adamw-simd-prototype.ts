// Prototype (measurement only, not used by the trainer): AdamW fused into one pass as a hand-encoded
// wasm SIMD (f32x4) kernel, in place on p, g, m, v, to size what a fused optimizer would save
// (docs/vs-torch.md: AdamW is the gap to torch). Same update as src/train/optimizer.ts:
//   g ← g·clip; m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²; p ← p·(1 − lr·wd) − (lr/bc1)·m / (sqrt(v)/sqrt(bc2) + eps)
// Checked against a float64 scalar reference. Usage: npx tsx bench/torch/adamw-simd-prototype.ts [numParams]
// (default 33,960,000 = the small preset). Integration would instantiate the module with tfjs-wasm's
// own WebAssembly.Memory imported, so that it updates the variables on the heap without copies.
const leb = (n: number): number[] => { const o: number[] = []; do { let b = n & 0x7f; n >>>= 7; if (n) b |= 0x80; o.push(b); } while (n); return o; };
const sec = (id: number, body: number[]) => [id, ...leb(body.length), ...body];
const vec = (items: number[][]) => [...leb(items.length), ...items.flat()];
const str = (s: string) => [...leb(s.length), ...Buffer.from(s)];
const N = Math.ceil(Number(process.argv[2] ?? 33_960_000) / 4) * 4, PAGES = Math.ceil((N * 16) / 65536) + 1;
const lg = (i: number) => [0x20, ...leb(i)], ls = (i: number) => [0x21, ...leb(i)];
const simd = (op: number) => [0xfd, ...leb(op)];
const LOAD = [...simd(0x00), 0x04, 0x00], STORE = [...simd(0x0b), 0x04, 0x00];
const SPLAT = simd(0x13), ADD = simd(0xe4), SUB = simd(0xe5), MUL = simd(0xe6), DIV = simd(0xe7), SQRT = simd(0xe3);
const addr = (base: number) => [...lg(base), ...lg(14), 0x6a];
const code: number[] = [];
for (let k = 0; k < 9; k++) code.push(...lg(5 + k), ...SPLAT, ...ls(18 + k));
code.push(...lg(0), 0x41, 2, 0x74, ...ls(27));
code.push(0x02, 0x40, 0x03, 0x40, ...lg(14), ...lg(27), 0x4f, 0x0d, 1);
code.push(...addr(2), ...LOAD, ...lg(26), ...MUL, ...ls(15));                                   // g = G*clip
code.push(...addr(3), ...LOAD, ...lg(18), ...MUL, ...lg(15), ...lg(19), ...MUL, ...ADD, ...ls(16)); // m
code.push(...addr(3), ...lg(16), ...STORE);
code.push(...addr(4), ...LOAD, ...lg(20), ...MUL, ...lg(15), ...lg(15), ...MUL, ...lg(21), ...MUL, ...ADD, ...ls(17)); // v
code.push(...addr(4), ...lg(17), ...STORE);
code.push(...addr(1), ...addr(1), ...LOAD, ...lg(22), ...MUL, ...lg(23), ...lg(16), ...MUL,
  ...lg(17), ...SQRT, ...lg(24), ...MUL, ...lg(25), ...ADD, ...DIV, ...SUB, ...STORE);            // p
code.push(...lg(14), 0x41, 16, 0x6a, ...ls(14), 0x0c, 0, 0x0b, 0x0b, 0x0b);
const body = [...vec([[1, 0x7f], [12, 0x7b], [1, 0x7f]]), ...code];
const bytes = new Uint8Array([0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
  ...sec(1, vec([[0x60, ...leb(14), 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, ...Array(9).fill(0x7d), 0]])),
  ...sec(3, vec([[0]])),
  ...sec(5, vec([[0x00, ...leb(PAGES)]])),
  ...sec(7, vec([[...str('adamw'), 0, 0], [...str('mem'), 2, 0]])),
  ...sec(10, vec([[...leb(body.length), ...body]])),
]);
// (the project's lib setting has no WebAssembly typings: a minimal local type)
const WA = (globalThis as unknown as { WebAssembly: { instantiate(b: Uint8Array): Promise<{ instance: { exports: unknown } }> } }).WebAssembly;
const { instance } = await WA.instantiate(bytes);
const { adamw, mem } = instance.exports as { adamw: (...a: number[]) => void; mem: { buffer: ArrayBuffer } };
const f = new Float32Array(mem.buffer);
const [P, G, M, V] = [0, 1, 2, 3].map((k) => k * N);
for (let i = 0; i < N; i++) { f[P + i] = 0.01 * Math.sin(i); f[G + i] = 0.001 * Math.cos(i); }
const ref = (i: number, t: number, lr: number) => { // scalar reference for element i after steps 1..t from zeros
  let p = 0.01 * Math.sin(i), m = 0, v = 0; const g = Math.fround(0.001 * Math.cos(i)); p = Math.fround(p);
  for (let s = 1; s <= t; s++) { m = 0.9 * m + 0.1 * g; v = 0.95 * v + 0.05 * g * g; p = p * (1 - lr * 0.1) - lr * (m / (1 - 0.9 ** s)) / (Math.sqrt(v / (1 - 0.95 ** s)) + 1e-8); }
  return p;
};
const lr = 1e-3;
for (let t = 1; t <= 5; t++) {
  const bc1 = 1 - 0.9 ** t, bc2 = 1 - 0.95 ** t;
  const t0 = performance.now();
  adamw(N, P * 4, G * 4, M * 4, V * 4, 0.9, 0.1, 0.95, 0.05, 1 - lr * 0.1, lr / bc1, 1 / Math.sqrt(bc2), 1e-8, 1);
  const ms = performance.now() - t0;
  let worst = 0;
  for (const i of [0, 1, 7, 12345, N - 1]) worst = Math.max(worst, Math.abs(f[P + i] - ref(i, t, lr)) / Math.abs(ref(i, t, lr)));
  console.log(`SIMD AdamW step ${t}: ${ms.toFixed(1)} ms for ${N} params, max rel err vs f64 reference ${worst.toExponential(1)}`);
}
