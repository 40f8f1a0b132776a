// Permute/unpermute, grouped SwiGLU experts and the shared expert: hand-written backwards against
// tf.grads of plain-op references (surrogate sum(y·dy)); and Megatron's round-trip invariant.
import { forEachBackend, tf, assertClose, assert } from './support/backends.ts';
import { GradStore, ParamStore } from '../src/model/module.ts';
import { SavedActivations } from '../src/model/saved.ts';
import { permuteTokens, scatterAddRows } from '../src/model/moe/permute.ts';
import { GroupedExperts } from '../src/model/moe/experts.ts';
import { SharedExpert } from '../src/model/moe/shared-expert.ts';
import { referenceExperts, referenceShared } from '../src/model/moe/reference.ts';
import { permutePlan, topkRouting } from '../src/model/routing/index.ts';

const init = (s: number[], _r: string, seed: number) => tf.randomNormal(s, 0, 0.5, 'float32', seed);

forEachBackend('moe experts', (test) => {
  test('permute → identity experts · 1/k → unpermute restores x, and dx = dy', () => tf.tidy(() => {
    const T = 7, E = 5, k = 3, H = 4;
    const logits = Array.from({ length: T * E }, (_, i) => Math.sin(i * 1.7));
    const r = topkRouting(logits, T, E, { scoreFunction: 'softmax', preSoftmax: false, topk: k, numGroups: null, groupTopk: null, topkScalingFactor: null });
    const p = permutePlan(r.routingMap, r.probs, T, E);
    const x = tf.randomNormal([T, H], 0, 1, 'float32', 3) as tf.Tensor2D, dy = tf.randomNormal([T, H], 0, 1, 'float32', 4) as tf.Tensor2D;
    const y = scatterAddRows(tf.mul(permuteTokens(x, p.sortedIndices), 1 / k) as tf.Tensor2D, p.sortedIndices, T);
    assertClose(y.dataSync(), x.dataSync(), 1e-6, 'round trip');
    const dx = scatterAddRows(tf.mul(permuteTokens(dy, p.sortedIndices), 1 / k) as tf.Tensor2D, p.sortedIndices, T);
    assertClose(dx.dataSync(), dy.dataSync(), 1e-6, 'gradient round trip');
  }));

  test('grouped experts (with an empty expert) match tf.grads', () => tf.tidy(() => {
    const E = 4, H = 6, F = 5, counts = [3, 0, 4, 2], N = 9;
    const params = new ParamStore();
    const ex = new GroupedExperts('ex', E, H, F, params, init, 1);
    const x = tf.randomNormal([N, H], 0, 1, 'float32', 5) as tf.Tensor2D;
    const p = tf.randomUniform([N, 1], 0.1, 1, 'float32', 6) as tf.Tensor2D;
    const dy = tf.randomNormal([N, H], 0, 1, 'float32', 7) as tf.Tensor2D;
    const rec = new SavedActivations('ex');
    // the record owns its inputs (the backward releases them after their last read): give it copies
    const y = ex.forward(tf.clone(x), tf.clone(p), counts, rec);
    assert.equal(rec.list().map((i) => i.name), ['permutedTokens', 'permutedProbs', 'fc1Out', 'fc3Out', 'act']);
    // a dropped 'act' is recomputed by its recipe
    const act = tf.clone(rec.get('act'));
    rec.drop('act');
    assertClose(rec.get('act').dataSync(), act.dataSync(), 0, 'act recompute');
    const grads = new GradStore();
    const { dx, dProbs } = ex.backward(dy, counts, rec, grads);
    // every saved tensor was released after its last read
    assert.equal(rec.list().map((i) => i.state), ['released', 'released', 'released', 'released', 'released']);
    const f = (xx: tf.Tensor, pp: tf.Tensor, w1: tf.Tensor, w3: tf.Tensor, w2: tf.Tensor) =>
      tf.sum(tf.mul(referenceExperts(xx, pp, { w1, w3, w2 }, counts), dy)) as tf.Scalar;
    assertClose(y.dataSync(), referenceExperts(x, p, { w1: ex.w1, w3: ex.w3, w2: ex.w2 }, counts).dataSync(), 1e-5, 'y');
    const g = tf.grads(f)([x, p, ex.w1, ex.w3, ex.w2]);
    assertClose(dx.dataSync(), g[0].dataSync(), 1e-4, 'dx');
    assertClose(dProbs.dataSync(), g[1].dataSync(), 1e-4, 'dProbs');
    assertClose(grads.get('ex.w1')!.dataSync(), g[2].dataSync(), 1e-4, 'dW1');
    assertClose(grads.get('ex.w3')!.dataSync(), g[3].dataSync(), 1e-4, 'dW3');
    assertClose(grads.get('ex.w2')!.dataSync(), g[4].dataSync(), 1e-4, 'dW2');
    grads.dispose(); rec.dispose(); params.dispose();
  }));

  for (const gate of [true, false]) {
    test(`shared expert (gate: ${gate}) matches tf.grads`, () => tf.tidy(() => {
      const T = 5, H = 6, F = 7;
      const params = new ParamStore();
      const sh = new SharedExpert('sh', H, F, gate, params, init, 2);
      const x = tf.randomNormal([T, H], 0, 1, 'float32', 8) as tf.Tensor2D, dy = tf.randomNormal([T, H], 0, 1, 'float32', 9) as tf.Tensor2D;
      const rec = new SavedActivations('sh');
      rec.save('x', x);
      const y = sh.forward(x, rec);
      const grads = new GradStore();
      const dx = sh.backward(dy, rec, grads);
      const names = gate ? ['w1', 'w3', 'w2', 'gate'] : ['w1', 'w3', 'w2'];
      const f = (xx: tf.Tensor, w1: tf.Tensor, w3: tf.Tensor, w2: tf.Tensor, gw?: tf.Tensor) =>
        tf.sum(tf.mul(referenceShared(xx, { w1, w3, w2, gate: gw ?? null }), dy)) as tf.Scalar;
      const vars = [x, sh.w1, sh.w3, sh.w2, ...(gate ? [sh.gate!] : [])];
      assertClose(y.dataSync(), referenceShared(x, { w1: sh.w1, w3: sh.w3, w2: sh.w2, gate: sh.gate }).dataSync(), 1e-5, 'y');
      const g = tf.grads(f as (...a: tf.Tensor[]) => tf.Scalar)(vars);
      assertClose(dx.dataSync(), g[0].dataSync(), 1e-4, 'dx');
      names.forEach((n, i) => assertClose(grads.get(`sh.${n}`)!.dataSync(), g[i + 1].dataSync(), 1e-4, `d ${n}`));
      grads.dispose(); rec.dispose(); params.dispose();
    }));
  }
});
