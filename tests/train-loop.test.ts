// Trainer pieces on a stand-in model (fast) and on a shrunken MoEGPT: LR schedule, AdamW,
// clipping, gradient accumulation, end-of-global-batch hooks, no tensor leaks.
import { forEachBackend, tf, assert, assertClose } from './support/backends.ts';
import { ParamStore, GradStore } from '../src/model/module.ts';
import { resolveConfig } from '../src/model/config.ts';
import { AdamW, getLr, globalGradNorm } from '../src/train/optimizer.ts';
import { Trainer, defaultTrainConfig } from '../src/train/trainer.ts';
import { loadDataset } from '../src/train/data.ts';
import { ToyModel } from '../src/train/toy-model.ts';
import { createModel } from '../src/train/model.ts';

const ds = loadDataset('text', 'byte', 1);

forEachBackend('train loop', (test) => {
  test('nanoGPT get_lr: warm-up, cosine, floor', () => {
    const s = { lr: 1, minLr: 0.1, warmupSteps: 10, decaySteps: 110 };
    assertClose([getLr(0, s), getLr(9, s), getLr(10, s), getLr(60, s), getLr(110, s), getLr(500, s)],
      [1 / 11, 10 / 11, 1, 0.55, 0.1, 0.1], 1e-12, 'lr');
  });

  test('AdamW: first step moves by lr·sign(g) (+ decoupled decay only on the decay group)', () => {
    const ps = new ParamStore();
    ps.add('w', tf.tensor2d([[1, -2], [3, 4]]), { decay: true });
    ps.add('b', tf.tensor1d([1, 1]), { decay: false });
    const opt = new AdamW(ps, { beta1: 0.9, beta2: 0.95, eps: 0, weightDecay: 0.5 });
    const g = new GradStore();
    g.add('w', tf.tensor2d([[0.1, -0.1], [2, -3]]));
    g.add('b', tf.tensor1d([-1, 5]));
    opt.step(g, 0.1);
    assertClose(ps.get('w').dataSync(), [1 * 0.95 - 0.1, -2 * 0.95 + 0.1, 3 * 0.95 - 0.1, 4 * 0.95 + 0.1], 1e-6, 'w');
    assertClose(ps.get('b').dataSync(), [1.1, 0.9], 1e-6, 'b');
    assertClose([globalGradNorm(g)], [Math.sqrt(0.02 + 4 + 9 + 1 + 25)], 1e-6, 'norm');
    g.dispose(); opt.dispose(); ps.dispose();
  });

  test('gradient accumulation: 2 micro-batches of 2 == 1 batch of 4 (same rows)', () => {
    const run = (batch: number, microBatches: number) => {
      const m = new ToyModel(256, 16, 3);
      const t = new Trainer(m, ds, defaultTrainConfig({ batch, microBatches, seqLen: 16, steps: 3, gradClip: 0 }), 1, 1);
      for (let i = 0; i < 3; i++) t.trainStep();
      const w = Array.from(m.params.get('head').dataSync());
      const loss = t.rows.map((r) => r.loss);
      t.dispose(); m.dispose();
      return { w, loss };
    };
    const a = run(4, 1), b = run(2, 2);
    assertClose(b.w, a.w, 1e-5, 'weights after 3 steps');
    assertClose(b.loss, a.loss, 1e-5, 'loss');
  });

  test('clipping bounds the update; hooks run once per optimizer step; metrics are filled', () => {
    const m = new ToyModel(256, 16, 3);
    const t = new Trainer(m, ds, defaultTrainConfig({ batch: 2, microBatches: 3, seqLen: 16, steps: 4, gradClip: 1e-3, evalEvery: 2 }), 1e6, 1e9, 2);
    for (let i = 0; i < 4; i++) t.trainStep();
    assert.is(m.biasUpdates, 4);
    assert.is(m.auxResets, 4);
    const r = t.rows[3];
    assert.is(r.step, 4);
    assert.ok(r.gradNorm > 1e-3 && r.tokensPerSecond > 0 && r.localMfu > 0 && r.rssBytes > 0);
    assert.ok(r.expertLoadMaxOverMean >= 1, 'expert load from router stats');
    assert.type(t.rows[1].valLoss, 'number');
    assert.is(t.rows[0].valLoss, null);
    assert.is(t.loads.length, 4);
    t.dispose(); m.dispose();
  });

  test('no tensor leak: numTensors equal after step 10 and step 200 (stand-in model), loss falls', () => {
    const m = new ToyModel(256, 32, 5);
    const t = new Trainer(m, ds, defaultTrainConfig({ batch: 4, seqLen: 32, steps: 200, microBatches: 2, lr: 1e-2, evalEvery: 50 }), 1, 1);
    for (let i = 0; i < 10; i++) t.trainStep();
    const n10 = tf.memory().numTensors;
    for (let i = 10; i < 200; i++) t.trainStep();
    assert.is(tf.memory().numTensors, n10);
    const first = t.rows.slice(0, 5).reduce((s, r) => s + r.loss, 0) / 5, last = t.rows.slice(-5).reduce((s, r) => s + r.loss, 0) / 5;
    assert.ok(last < first - 1.5, `loss ${first} -> ${last}`);
    t.dispose(); m.dispose();
  });

  test('no tensor leak with MoEGPT (shrunken tiny): step 3 vs step 12', () => {
    const cfg = resolveConfig('tiny', { hiddenSize: 32, numLayers: 2, moe: { numExperts: 16, topk: 4, expertHiddenSize: 16 }, mla: { qLoraRank: 16, kvLoraRank: 16, qkNopeHeadDim: 8, qkRopeHeadDim: 8, vHeadDim: 8 }, numHeads: 2, denseIntermediateSize: 64 });
    const m = createModel(cfg, 1);
    const t = new Trainer(m, ds, defaultTrainConfig({ batch: 2, seqLen: 16, steps: 12, microBatches: 2 }), 1, 1, cfg.moe.topk);
    for (let i = 0; i < 3; i++) t.trainStep();
    const n3 = tf.memory().numTensors;
    for (let i = 3; i < 12; i++) t.trainStep();
    assert.is(tf.memory().numTensors, n3);
    assert.ok(t.rows[11].loss < t.rows[0].loss, `loss ${t.rows[0].loss} -> ${t.rows[11].loss}`);
    t.dispose(); m.dispose();
  });
}, ['wasm']);
