// The fused AdamW kernel and the float64 sum of squares on the wasm heap (src/backend/adamw.ts):
// bit-identical to the tfjs-op formulation of src/train/optimizer.ts (SIMD bulk, JS tails, JS fallback),
// close to a float64 reference, m/v in place unless shared, parameters re-assigned, survives heap growth.
import { forEachBackend, tf, assert, assertClose, assertNoLeak } from './support/backends.ts';
import { fusedAdamWUpdate, sumSquaresF64, fusedOptions, fusedSimdAvailable, type AdamWScalars } from '../src/backend/adamw.ts';

/** Deterministic pseudo-random floats in [-a, a). */
function rand(n: number, seed: number, a = 1): Float32Array {
  const x = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; x[i] = a * (2 * (s / 2 ** 32) - 1); }
  return x;
}

/** The unfused tfjs update (same graph as AdamW.step's tfjs path). */
function tfjsUpdate(p: tf.Variable, g0: tf.Tensor | undefined, m: tf.Variable, v: tf.Variable, s: AdamWScalars): void {
  tf.tidy(() => {
    const g = g0 ? (s.gradScale === 1 ? g0 : tf.mul(g0, s.gradScale)) : tf.zerosLike(p);
    const m1 = tf.add(tf.mul(m, s.beta1), tf.mul(g, 1 - s.beta1));
    const v1 = tf.add(tf.mul(v, s.beta2), tf.mul(tf.square(g), 1 - s.beta2));
    const upd = tf.div(tf.div(m1, s.bc1), tf.add(tf.sqrt(tf.div(v1, s.bc2)), s.eps));
    const pd = s.weightDecay > 0 ? tf.mul(p, 1 - s.lr * s.weightDecay) : p;
    p.assign(tf.sub(pd, tf.mul(upd, s.lr)));
    m.assign(m1); v.assign(v1);
  });
}

interface State { p: tf.Variable; m: tf.Variable; v: tf.Variable }
const make = (n: number, seed: number): State => {
  const mk = (x: Float32Array) => { const t = tf.tensor1d(x), v = tf.variable(t, false); t.dispose(); return v; };
  return { p: mk(rand(n, seed, 0.5)), m: mk(rand(n, seed + 1, 1e-3)), v: mk(rand(n, seed + 2, 1e-6).map(Math.abs)) };
};
const free = (s: State) => { s.p.dispose(); s.m.dispose(); s.v.dispose(); };
const bits = (t: tf.Tensor) => new Uint32Array((t.dataSync() as Float32Array).slice().buffer);
function assertBitEqual(a: tf.Tensor, b: tf.Tensor, what: string): void {
  const x = bits(a), y = bits(b);
  assert.is(x.length, y.length, `${what}: length`);
  let diff = 0, at = -1;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) { diff++; if (at < 0) at = i; }
  assert.is(diff, 0, `${what}: ${diff} elements differ (first [${at}])`);
}
const scalars = (t: number, lr: number, wd: number, scale: number): AdamWScalars =>
  ({ beta1: 0.9, beta2: 0.95, eps: 1e-8, bc1: 1 - 0.9 ** t, bc2: 1 - 0.95 ** t, lr, weightDecay: wd, gradScale: scale });

/** Run `steps` updates with fused and tfjs paths from the same state; return both states. */
function compare(n: number, steps: number, opts: { grad: boolean; wd: number; scale: number }): [State, State] {
  const a = make(n, 7), b = make(n, 7);
  for (let t = 1; t <= steps; t++) {
    const g = opts.grad ? tf.tensor1d(rand(n, 100 + t, 0.01)) : undefined;
    const s = scalars(t, 1e-3 * t, opts.wd, opts.scale);
    fusedAdamWUpdate(a.p, g, a.m, a.v, s);
    tfjsUpdate(b.p, g, b.m, b.v, s);
    g?.dispose();
  }
  return [a, b];
}

forEachBackend('backend fused AdamW', (test) => {
  test('wasm SIMD kernel instantiates on the tfjs-wasm memory', () => {
    assert.ok(fusedSimdAvailable(), 'wasm SIMD available under Node 20');
  });

  for (const simd of [true, false]) {
    test(`bit-identical to the tfjs ops over 4 steps (${simd ? 'SIMD + JS tail' : 'JS fallback'}; sizes, no grad, decay, clip)`, () => {
      fusedOptions.simd = simd;
      try {
        for (const n of [1, 3, 4, 7, 64, 1031]) {
          for (const o of [{ grad: true, wd: 0.1, scale: 1 }, { grad: true, wd: 0, scale: 0.37 }, { grad: false, wd: 0.1, scale: 0.5 }]) {
            const [a, b] = compare(n, 4, o);
            const what = `n=${n} ${JSON.stringify(o)}`;
            assertBitEqual(a.p, b.p, `${what} p`); assertBitEqual(a.m, b.m, `${what} m`); assertBitEqual(a.v, b.v, `${what} v`);
            free(a); free(b);
          }
        }
      } finally { fusedOptions.simd = true; }
    });
  }

  test('close to a float64 reference (1e-6 relative to the tensor scale, 5 steps)', () => {
    const n = 1001, st = make(n, 3);
    const p = Float64Array.from(st.p.dataSync()), m = Float64Array.from(st.m.dataSync()), v = Float64Array.from(st.v.dataSync());
    for (let t = 1; t <= 5; t++) {
      const gh = rand(n, 50 + t, 0.02), g = tf.tensor1d(gh), s = scalars(t, 2e-3, 0.1, 0.8);
      fusedAdamWUpdate(st.p, g, st.m, st.v, s);
      g.dispose();
      for (let i = 0; i < n; i++) {
        const gi = gh[i] * 0.8;
        m[i] = 0.9 * m[i] + 0.1 * gi; v[i] = 0.95 * v[i] + 0.05 * gi * gi;
        p[i] = p[i] * (1 - 2e-3 * 0.1) - 2e-3 * (m[i] / s.bc1) / (Math.sqrt(v[i] / s.bc2) + 1e-8);
      }
    }
    assertClose(st.p.dataSync(), p, 1e-6, 'p'); assertClose(st.m.dataSync(), m, 1e-6, 'm'); assertClose(st.v.dataSync(), v, 1e-6, 'v');
    free(st);
  });

  test('m, v updated in place (same dataId); p re-assigned; a shared moment buffer is not written', () => {
    const st = make(10, 1), g = tf.tensor1d(rand(10, 2, 0.1));
    const [pId, mId, vId] = [st.p.dataId, st.m.dataId, st.v.dataId];
    fusedAdamWUpdate(st.p, g, st.m, st.v, scalars(1, 1e-3, 0.1, 1));
    assert.ok(st.m.dataId === mId && st.v.dataId === vId, 'moments in place');
    assert.ok(st.p.dataId !== pId, 'parameter gets a fresh buffer');
    const alias = tf.reshape(st.m, [2, 5]), before = Array.from(alias.dataSync()); // shares m's buffer (refCount 2)
    fusedAdamWUpdate(st.p, g, st.m, st.v, scalars(2, 1e-3, 0.1, 1));
    assert.equal(Array.from(alias.dataSync()), before, 'the reshaped view keeps the old moments');
    assert.ok(st.m.dataId !== mId, 'shared moment written to a fresh buffer');
    alias.dispose(); g.dispose(); free(st);
  });

  test('heap growth between steps (the kernel imports the live memory)', () => {
    const [a, b] = compare(1029, 1, { grad: true, wd: 0.1, scale: 1 });
    const big = tf.zeros([48 * 2 ** 20]); // 192 MB: grows the heap
    const g = tf.tensor1d(rand(1029, 9, 0.01)), s = scalars(2, 1e-3, 0.1, 1);
    fusedAdamWUpdate(a.p, g, a.m, a.v, s); tfjsUpdate(b.p, g, b.m, b.v, s);
    assertBitEqual(a.p, b.p, 'p after growth'); assertBitEqual(a.m, b.m, 'm after growth');
    big.dispose(); g.dispose(); free(a); free(b);
  });

  test('no tensor leak', async () => {
    const st = make(33, 4), g = tf.tensor1d(rand(33, 5, 0.1));
    await assertNoLeak(() => fusedAdamWUpdate(st.p, g, st.m, st.v, scalars(1, 1e-3, 0.1, 0.5)), 'fusedAdamWUpdate');
    g.dispose(); free(st);
  });

  test('sumSquaresF64 = float64 Σx² (SIMD and JS fallback; tails; empty)', () => {
    for (const simd of [true, false]) {
      fusedOptions.simd = simd;
      try {
        for (const n of [0, 1, 5, 4096, 100003]) {
          const x = rand(n, n + 11, 3), t = tf.tensor1d(x);
          let ref = 0; for (let i = 0; i < n; i++) ref += x[i] * x[i];
          assertClose([sumSquaresF64(t)], [ref], 1e-13, `n=${n} simd=${simd}`, 1e-30);
          t.dispose();
        }
      } finally { fusedOptions.simd = true; }
    }
  });
}, ['wasm']);
