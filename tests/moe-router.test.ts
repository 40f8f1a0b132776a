// The router layer's hand-written backward against tf.grads, per score mode, with aux + z losses.
// Surrogate: sum(permutedProbs · g) + lossScale·(Σaux + z), g a fixed random upstream gradient;
// routing decisions fixed from the layer's host plan (outside tf.grads, tfjs-notes P3).
import { forEachBackend, tf, assertClose, assert } from './support/backends.ts';
import { resolveConfig, type MoEConfig } from '../src/model/config.ts';
import { ParamStore, GradStore, defaultContext } from '../src/model/module.ts';
import { SavedActivations } from '../src/model/saved.ts';
import { Router } from '../src/model/moe/router.ts';
import { referenceProbs, referenceAux } from '../src/model/moe/reference.ts';

const T = 8, H = 6, E = 8;
const modes: [string, Partial<MoEConfig>][] = [
  ['softmax after top-k + switch + z', { scoreFunction: 'softmax', preSoftmax: false, auxLoss: [{ type: 'switch', coeff: 0.1 }], zLossCoeff: 0.01 }],
  ['softmax before top-k + seq + z, capacity 0.5', { scoreFunction: 'softmax', preSoftmax: true, auxLoss: [{ type: 'seq', coeff: 0.1 }], zLossCoeff: 0.01, capacityFactor: 0.5 }],
  ['sigmoid + bias + groups + scaling + switch', { scoreFunction: 'sigmoid', expertBias: true, numGroups: 4, groupTopk: 2, topkScalingFactor: 2.5, auxLoss: [{ type: 'switch', coeff: 0.1 }], zLossCoeff: 0.01 }],
  ['softmax + jitter, padded position drop', { scoreFunction: 'softmax', inputJitterEps: 0.2, capacityFactor: 1, dropPolicy: 'position', padToCapacity: true, auxLoss: [{ type: 'switch', coeff: 0.1 }] }],
];

forEachBackend('moe router', (test) => {
  for (const [name, over] of modes) {
    test(name, () => tf.tidy(() => {
      const cfg = resolveConfig('tiny', { hiddenSize: H, moe: { numExperts: E, topk: 2, topkScalingFactor: null, auxLoss: [], zLossCoeff: 0, ...over } });
      const params = new ParamStore();
      const router = new Router('router', cfg.moe, H, 0, params, (s, _r, seed) => tf.randomNormal(s, 0, 1, 'float32', seed), 7);
      const x = tf.randomNormal([T, H], 0, 1, 'float32', 1) as tf.Tensor2D;
      const ctx = defaultContext({ lossScale: 0.25, seed: 9 });
      const rec = new SavedActivations('router');
      rec.save('x', x);
      const bias = cfg.moe.expertBias ? Float32Array.from({ length: E }, (_, e) => (e % 3) * 0.2) : null;
      const plan = router.forward(x, rec, ctx, { expertBias: bias, seqLen: 4 });
      const g = Float32Array.from({ length: plan.permute.numRows }, (_, r) => Math.sin(r + 1));
      const grads = new GradStore();
      const dx = router.backward(g, rec, grads, ctx);
      const noise = rec.has('routerJitter') ? rec.get('routerJitter') : null;
      assert.is(noise !== null, (over.inputJitterEps ?? 0) > 0, 'jitter saved iff on');
      const pick = new Float32Array(plan.permute.numRows * T * E);
      plan.permute.sortedIndices.forEach((t, r) => { pick[r * T * E + t * E + plan.permute.expertOfRow[r]] = 1; });
      const f = (xx: tf.Tensor, w: tf.Tensor) => {
        const logits = tf.matMul(noise ? tf.mul(xx, noise) : xx, w, false, true) as tf.Tensor2D;
        const pp = tf.matMul(tf.tensor2d(pick, [plan.permute.numRows, T * E]), tf.reshape(referenceProbs(logits, plan, cfg.moe), [T * E, 1]));
        return tf.add(tf.sum(tf.mul(tf.reshape(pp, [-1]), tf.tensor1d(g))), tf.mul(referenceAux(logits, plan, cfg.moe, { seqLen: 4 }), ctx.lossScale)) as tf.Scalar;
      };
      const [gx, gw] = tf.grads(f)([x, router.weight]);
      assertClose(dx.dataSync(), gx.dataSync(), 1e-4, 'dx');
      assertClose(grads.get('router')!.dataSync(), gw.dataSync(), 1e-4, 'dW');
      grads.dispose(); rec.dispose(); params.dispose();
    }));
  }
});
