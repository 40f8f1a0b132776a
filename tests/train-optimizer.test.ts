// AdamW (src/train/optimizer.ts) on every backend: the fused wasm path equals the unfused tfjs path
// (bit-identical on wasm; 1e-6 per element across backends) over several steps with two decay groups,
// missing gradients and clipping; float64 reference; checkpoint+resume is bit-identical to an
// uninterrupted run; globalGradNorm is float64-accurate; nothing leaks.
import { forEachBackend, tf, assert, assertClose, assertNoLeak } from './support/backends.ts';
import { ParamStore, GradStore } from '../src/model/module.ts';
import { AdamW, globalGradNorm, type AdamWConfig } from '../src/train/optimizer.ts';

function rand(n: number, seed: number, a = 1): Float32Array {
  const x = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; x[i] = a * (2 * (s / 2 ** 32) - 1); }
  return x;
}
const CFG: AdamWConfig = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };
const SHAPES: Record<string, { shape: number[]; decay: boolean }> = {
  'w1': { shape: [17, 33], decay: true }, 'w2': { shape: [4, 8, 6], decay: true },
  'norm': { shape: [33], decay: false }, 'bias': { shape: [3], decay: false }, 'idle': { shape: [5, 7], decay: true },
};
function params(seed = 1): ParamStore {
  const ps = new ParamStore();
  let k = seed;
  for (const [n, { shape, decay }] of Object.entries(SHAPES)) ps.add(n, tf.tensor(rand(shape.reduce((a, b) => a * b, 1), k++, 0.5), shape), { decay });
  return ps;
}
/** Gradients of step t ('idle' never has one: its moments decay and weight decay still applies). */
function grads(t: number): GradStore {
  const g = new GradStore();
  let k = 1000 * t;
  for (const [n, { shape }] of Object.entries(SHAPES)) if (n !== 'idle') g.grads.set(n, tf.tensor(rand(shape.reduce((a, b) => a * b, 1), k++, 0.05), shape));
  return g;
}
const LR = (t: number) => 1e-3 * (1 + t), CLIP = (t: number) => (t % 2 ? 1 : 0.6);
function run(opt: AdamW, from: number, to: number): void {
  for (let t = from; t <= to; t++) { const g = grads(t); opt.step(g, LR(t), CLIP(t)); g.dispose(); }
}
const host = (ps: ParamStore, opt: AdamW) => {
  const out = new Map<string, Float32Array>();
  for (const [n, v] of ps.vars) out.set(`p.${n}`, (v.dataSync() as Float32Array).slice());
  for (const [n, v] of opt.stateTensors()) out.set(n, (v.dataSync() as Float32Array).slice());
  return out;
};
function assertBitEqual(a: Map<string, Float32Array>, b: Map<string, Float32Array>, what: string): void {
  assert.equal([...a.keys()], [...b.keys()]);
  for (const [n, x] of a) {
    const y = b.get(n)!, xi = new Uint32Array(x.buffer), yi = new Uint32Array(y.buffer);
    let diff = 0; for (let i = 0; i < xi.length; i++) if (xi[i] !== yi[i]) diff++;
    assert.is(diff, 0, `${what}: ${n} has ${diff} differing elements`);
  }
}
/** max over elements of |a−b| / max(|b|, floor). */
function maxElemRel(a: Float32Array, b: ArrayLike<number>, floor: number): number {
  let w = 0; for (let i = 0; i < a.length; i++) w = Math.max(w, Math.abs(a[i] - b[i]) / Math.max(Math.abs(b[i]), floor));
  return w;
}

/** Float64 reference of `steps` AdamW steps of the same problem. */
function reference(steps: number): Map<string, Float64Array> {
  const ps = params(), out = new Map<string, Float64Array>();
  const st = new Map<string, { p: Float64Array; m: Float64Array; v: Float64Array }>();
  for (const [n, v] of ps.vars) st.set(n, { p: Float64Array.from(v.dataSync()), m: new Float64Array(v.size), v: new Float64Array(v.size) });
  ps.dispose();
  for (let t = 1; t <= steps; t++) {
    const g = grads(t), lr = LR(t), c = CLIP(t), bc1 = 1 - 0.9 ** t, bc2 = 1 - 0.95 ** t;
    for (const [n, s] of st) {
      const gh = g.get(n)?.dataSync(), wd = SHAPES[n].decay ? 0.1 : 0;
      for (let i = 0; i < s.p.length; i++) {
        const gi = gh ? gh[i] * c : 0;
        s.m[i] = 0.9 * s.m[i] + 0.1 * gi; s.v[i] = 0.95 * s.v[i] + 0.05 * gi * gi;
        s.p[i] = s.p[i] * (1 - lr * wd) - lr * (s.m[i] / bc1) / (Math.sqrt(s.v[i] / bc2) + 1e-8);
      }
    }
    g.dispose();
  }
  for (const [n, s] of st) { out.set(`p.${n}`, s.p); out.set(`m.${n}`, s.m); out.set(`v.${n}`, s.v); }
  return out;
}

const results = new Map<string, Map<string, Float32Array>>(); // backend → state after 5 steps (cross-backend check)

forEachBackend('train optimizer', (test, backend) => {
  test('AdamW (auto: fused on wasm) equals the unfused tfjs AdamW over 5 steps; float64 reference', () => {
    const out: Record<string, Map<string, Float32Array>> = {};
    for (const impl of ['auto', 'tfjs'] as const) {
      const ps = params(), opt = new AdamW(ps, CFG);
      opt.impl = impl;
      run(opt, 1, 5);
      out[impl] = host(ps, opt);
      opt.dispose(); ps.dispose();
    }
    if (backend === 'wasm') assertBitEqual(out.auto, out.tfjs, 'fused vs tfjs');
    for (const [n, x] of out.auto) {
      const r = maxElemRel(x, out.tfjs.get(n)!, 1e-30);
      assert.ok(r <= 1e-6, `${n}: fused vs tfjs ${r.toExponential(2)} > 1e-6 per element`);
    }
    const ref = reference(5);
    for (const [n, x] of out.auto) assertClose(x, ref.get(n)!, 1e-6, `${n} vs float64 reference`, 1e-30);
    results.set(backend, out.auto);
    const other = [...results.keys()].find((b) => b !== backend);
    if (other) for (const [n, x] of out.auto) {
      const r = maxElemRel(x, results.get(other)!.get(n)!, 1e-3);
      assert.ok(r <= 1e-6, `${n}: ${backend} vs ${other} ${r.toExponential(2)} > 1e-6 per element (floor 1e-3)`);
    }
  });

  test('checkpoint + resume (moments and t from host arrays) is bit-identical to an uninterrupted run', () => {
    const ps = params(), opt = new AdamW(ps, CFG);
    run(opt, 1, 6);
    const straight = host(ps, opt);
    opt.dispose(); ps.dispose();

    const a = params(), oa = new AdamW(a, CFG);
    run(oa, 1, 3);
    const saved = host(a, oa), t = oa.t;
    oa.dispose(); a.dispose();
    const b = params(99), ob = new AdamW(b, CFG); // different initial weights: all state comes from `saved`
    for (const [n, v] of b.vars) tf.tidy(() => v.assign(tf.tensor(saved.get(`p.${n}`)!, v.shape)));
    const arrays = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [n, v] of b.vars) for (const k of ['m', 'v']) arrays.set(`${k}.${n}`, { shape: v.shape, data: saved.get(`${k}.${n}`)! });
    ob.loadState(t, arrays);
    run(ob, 4, 6);
    assertBitEqual(host(b, ob), straight, 'resumed vs uninterrupted');
    ob.dispose(); b.dispose();
  });

  test('globalGradNorm: float64-accurate (1e-12) where float32 summation is off', () => {
    const g = new GradStore(), sizes = [1, 7, 1000, 1 << 20, 3333];
    let ref = 0;
    sizes.forEach((n, k) => {
      const x = rand(n, 77 + k, 1).map((v) => v + 3); // large mean: float32 running sums lose digits
      for (let i = 0; i < n; i++) ref += x[i] * x[i];
      g.grads.set(`g${k}`, tf.tensor1d(x));
    });
    assertClose([globalGradNorm(g)], [Math.sqrt(ref)], 1e-12, 'norm', 1e-30);
    assert.is(globalGradNorm(new GradStore()), 0);
    g.dispose();
  });

  test('no tensor leak (step and norm)', async () => {
    const ps = params(), opt = new AdamW(ps, CFG), g = grads(1);
    await assertNoLeak(() => { opt.step(g, 1e-3, 0.5); globalGradNorm(g); }, 'AdamW.step + globalGradNorm');
    g.dispose(); opt.dispose(); ps.dispose();
  });
});
