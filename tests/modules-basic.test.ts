// RMSNorm, RoPE, embedding, SwiGLU MLP, cross-entropy: hand-written backward vs tf.grads,
// plus forward checks against explicit formulas.
import { forEachBackend, tf, assert, assertClose, assertNoLeak } from './support/backends.ts';
import { ParamStore, GradStore } from '../src/model/module.ts';
import { SavedActivations } from '../src/model/saved.ts';
import { RMSNorm } from '../src/model/norm.ts';
import { applyRope, applyRopeBackward } from '../src/model/rope.ts';
import { Embedding } from '../src/model/embedding.ts';
import { SwiGLUMLP } from '../src/model/mlp.ts';
import { CrossEntropy } from '../src/model/cross-entropy.ts';
import { gradCheck, assertGrads, randn } from './model-gradcheck.ts';

const init = (shape: number[], _r: string, seed: number) => tf.randomNormal(shape, 0, 0.3, 'float32', seed);

forEachBackend('modules-basic', (test) => {
  test('RMSNorm forward = x·rsqrt(mean x² + eps)·g and backward = autograd', () => {
    const p = new ParamStore();
    const n = new RMSNorm(p, 'n', 'norm', 8, 1e-5, 1);
    p.get('n.weight').assign(randn([8], 5));
    const x = randn([2, 3, 8], 1);
    const rec = new SavedActivations('t');
    const y = tf.tidy(() => n.forward(x, rec));
    const xv = x.dataSync(), g = p.get('n.weight').dataSync(), yv = y.dataSync();
    for (let r = 0; r < 6; r++) {
      let ms = 0; for (let i = 0; i < 8; i++) ms += xv[r * 8 + i] ** 2;
      const rs = 1 / Math.sqrt(ms / 8 + 1e-5);
      for (let i = 0; i < 8; i++) assert.ok(Math.abs(yv[r * 8 + i] - xv[r * 8 + i] * rs * g[i]) < 1e-5);
    }
    assert.equal(rec.list().map((i) => i.name), ['norm.x', 'norm.rstd']);
    rec.dispose(); y.dispose();
    assertGrads(gradCheck(p, x, (xx, r) => n.forward(xx, r), (dy, r, gr) => n.backward(dy, r, gr)), 1e-4, 'rmsnorm');
    x.dispose(); p.dispose();
  });

  test('RoPE: rotate-half, norm-preserving, relative, backward = autograd', () => {
    const x = randn([2, 5, 3, 8], 2);
    const y = applyRope(x, 10000);
    // position 0 is the identity; norms are preserved per (b, s, head)
    const xs = x.dataSync(), ys = y.dataSync();
    for (let i = 0; i < 3 * 8; i++) assert.ok(Math.abs(xs[i] - ys[i]) < 1e-6);
    const nx = tf.sum(tf.square(x), -1).dataSync(), ny = tf.sum(tf.square(y), -1).dataSync();
    assertClose(ny, nx, 1e-5, 'norms');
    // rotate-half pairs (i, i + d/2): position 1, pair 0 rotated by angle 1 rad
    const c = Math.cos(1), s = Math.sin(1), base = 3 * 8; // b0, s1, head0
    assert.ok(Math.abs(ys[base] - (xs[base] * c - xs[base + 4] * s)) < 1e-5);
    assert.ok(Math.abs(ys[base + 4] - (xs[base + 4] * c + xs[base] * s)) < 1e-5);
    const dy = randn(y.shape, 3);
    const ref = tf.grad((xx: tf.Tensor) => applyRope(xx, 10000))(x, dy);
    assertClose(applyRopeBackward(dy, 10000).dataSync(), ref.dataSync(), 1e-5, 'rope dx');
    tf.dispose([x, y, dy, ref]);
  });

  test('embedding: host gather forward = tf.gather, scatter-add backward = gather autograd (duplicates summed)', () => {
    const p = new ParamStore();
    p.add('emb', randn([10, 4], 4), { decay: false });
    const e = new Embedding(p, 'emb');
    const ids = tf.tensor1d([3, 1, 3, 9, 0, 3], 'int32');
    const rec = new SavedActivations('t'), g = new GradStore();
    const y = e.forward(ids, rec);
    assertClose(y.dataSync(), tf.gather(p.get('emb'), ids).dataSync(), 0, 'forward');
    const dy = randn([6, 4], 5);
    tf.tidy(() => e.backward(dy, rec, g));
    const ref = tf.grad((w: tf.Tensor) => tf.gather(w, ids))(p.get('emb'), dy);
    const d = g.get('emb')!.dataSync();
    assertClose(d, ref.dataSync(), 1e-6, 'dW');
    assert.ok(d.slice(3 * 4, 4 * 4).some((v) => v !== 0) && d.slice(2 * 4, 3 * 4).every((v) => v === 0));
    assert.throws(() => e.forward(tf.tensor1d([10], 'int32'), null));
    tf.dispose([ids, y, dy, ref]); rec.dispose(); g.dispose(); p.dispose();
  });

  test('SwiGLU MLP backward = autograd; saved names', () => {
    const p = new ParamStore();
    const m = new SwiGLUMLP(p, 'mlp', 8, 12, init);
    const x = randn([6, 8], 6);
    const rec = new SavedActivations('t');
    tf.tidy(() => m.forward(x, rec));
    assert.equal(rec.list().map((i) => `${i.name}:${i.shape}`), ['mlp.x:6,8', 'mlp.fc1:6,24', 'mlp.act:6,12']);
    rec.dispose();
    assertGrads(gradCheck(p, x, (xx, r) => m.forward(xx, r), (dy, r, gr) => m.backward(dy, r, gr)), 1e-4, 'mlp');
    x.dispose(); p.dispose();
  });

  test('cross-entropy: mean over non-ignored tokens, gradient = autograd', () => {
    const ce = new CrossEntropy();
    const logits = randn([5, 7], 8, 2);
    const targets = new Int32Array([2, -1, 6, 0, -1]);
    const rec = new SavedActivations('ce');
    const loss = ce.forward(logits, targets, rec);
    const lv = logits.arraySync() as number[][];
    let want = 0;
    for (const t of [0, 2, 3]) { const row = lv[t]; const m = Math.max(...row); const lse = m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0)); want += lse - row[targets[t]]; }
    assert.ok(Math.abs(loss.dataSync()[0] - want / 3) < 1e-5);
    const d = ce.backward(0.5, rec);
    const oh = tf.tensor2d(Array.from(targets).flatMap((y) => Array.from({ length: 7 }, (_, v) => (v === y ? 1 : 0))), [5, 7]);
    const ref = tf.grad((l: tf.Tensor) => tf.mul(tf.div(tf.neg(tf.sum(tf.mul(tf.logSoftmax(l), oh))), 3), 0.5))(logits);
    // a huge logit gap (probability underflow) still gives the exact loss
    const big = tf.tensor2d([[0, 200, 0]]);
    assert.ok(Math.abs(ce.forward(big, new Int32Array([0]), null).dataSync()[0] - 200) < 1e-3);
    assertClose(d.dataSync(), ref.dataSync(), 1e-5, 'dlogits');
    assert.ok(Array.from(d.dataSync().slice(7, 14)).every((v) => v === 0), 'ignored row has zero gradient');
    tf.dispose([logits, loss, d, ref, oh, big]); rec.dispose();
  });

  test('no leaks in MLP forward/backward', async () => {
    const p = new ParamStore();
    const m = new SwiGLUMLP(p, 'mlp', 8, 12, init);
    const x = randn([6, 8], 6), dy = randn([6, 8], 7);
    await assertNoLeak(() => {
      const rec = new SavedActivations('t'), g = new GradStore();
      const y = tf.tidy(() => m.forward(x, rec));
      const dx = tf.tidy(() => m.backward(dy, rec, g));
      rec.dispose(); g.dispose(); tf.dispose([y, dx]);
    }, 'mlp');
    tf.dispose([x, dy]); p.dispose();
  });
});
