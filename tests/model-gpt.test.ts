// MoEGPT behaviour: deterministic TinyInit/DSSN init, no tensor leaks over repeated steps,
// eval loss = training loss, logits, loss scaling for micro-batches, saved-activation report.
import { forEachBackend, tf, assert, assertClose } from './support/backends.ts';
import { resolveConfig } from '../src/model/config.ts';
import { MoEGPT } from '../src/model/gpt.ts';
import { GradStore, defaultContext } from '../src/model/module.ts';
import { initStd } from '../src/model/init.ts';

const cfg = resolveConfig('tiny', {
  vocabSize: 64, hiddenSize: 32, numLayers: 3, numDenseLayers: 1, denseIntermediateSize: 48, numHeads: 2,
  mla: { qLoraRank: 16, kvLoraRank: 8, qkNopeHeadDim: 8, qkRopeHeadDim: 4, vHeadDim: 8 },
  numMtpLayers: 1, moe: { numExperts: 16, topk: 4, expertHiddenSize: 8 },
});
const B = 2, S = 8;
const tokens = Int32Array.from({ length: B * S }, (_, i) => (i * 5 + 1) % 64);
const targets = Int32Array.from({ length: B * S }, (_, i) => (i * 5 + 6) % 64);

forEachBackend('model-gpt', (test) => {
  test('init: deterministic per seed, TinyInit std, DSSN post-norm gains c/sqrt(L), embedding std', () => {
    const a = new MoEGPT(cfg, 3), b = new MoEGPT(cfg, 3), c = new MoEGPT(cfg, 4);
    const w = 'layers.1.attn.wkvB';
    assert.equal(Array.from(a.params.get(w).dataSync()), Array.from(b.params.get(w).dataSync()));
    assert.not.equal(Array.from(a.params.get(w).dataSync()), Array.from(c.params.get(w).dataSync()));
    const big = new MoEGPT(resolveConfig('tiny', { numLayers: 2, numDenseLayers: 2 }), 1);
    const std = (n: string) => { const v = big.params.get(n).dataSync(); let s = 0; for (const x of v) s += x * x; return Math.sqrt(s / v.length); };
    const want = initStd(big.cfg, 'linear');
    assert.ok(Math.abs(want - Math.sqrt(1 / (2 * 128 * 2))) < 1e-12);
    for (const n of ['layers.0.mlp.fc1', 'layers.1.attn.wkvA', 'lmHead.weight']) assert.ok(Math.abs(std(n) / want - 1) < 0.05, `${n} std ${std(n)} vs ${want}`);
    assert.ok(Math.abs(std('embedding.weight') / 0.5 - 1) < 0.05);
    assertClose(big.params.get('layers.0.attnPostNorm.weight').dataSync(), new Float32Array(128).fill(0.283 / Math.sqrt(2)), 1e-6, 'γ_attn');
    assertClose(big.params.get('layers.0.mlpPostNorm.weight').dataSync(), new Float32Array(128).fill(0.432 / Math.sqrt(2)), 1e-6, 'γ_mlp');
    [a, b, c, big].forEach((m) => m.dispose());
  });

  test('no tensor leak over repeated forwardBackward / forwardLoss / logits', () => {
    const m = new MoEGPT(cfg, 1);
    const step = () => { const g = new GradStore(); m.forwardBackward(tokens, targets, B, S, defaultContext(), g); g.dispose(); };
    step();
    const n0 = tf.memory().numTensors;
    step(); step();
    m.forwardLoss(tokens, targets, B, S);
    m.logits(tokens, B, S).dispose();
    assert.is(tf.memory().numTensors, n0);
    m.dispose();
  });

  test('forwardLoss = forwardBackward loss; logits [B·S, V]; report covers every record', () => {
    const m = new MoEGPT(cfg, 2);
    const g = new GradStore();
    const r = m.forwardBackward(tokens, targets, B, S, defaultContext(), g);
    const e = m.forwardLoss(tokens, targets, B, S);
    assert.ok(Math.abs(e.lmLoss - r.lmLoss) < 1e-5 && Math.abs(e.mtpLoss - r.mtpLoss) < 1e-5);
    assert.ok(r.auxLoss > 0 && r.zLoss > 0, 'aux and z reported');
    assert.ok(Math.abs(r.loss - (r.lmLoss + cfg.mtpLossCoeff * r.mtpLoss + r.auxLoss + r.zLoss)) < 1e-9);
    const lg = m.logits(tokens, B, S);
    assert.equal(lg.shape, [B * S, 64]);
    lg.dispose();
    const rep = m.savedActivationReport();
    const recs = new Set(rep.map((x) => x.record));
    for (const n of ['embedding', 'layers.0', 'layers.2', 'head', 'mtp.0']) assert.ok(recs.has(n), n);
    const l1 = rep.filter((x) => x.record === 'layers.1').map((x) => x.name);
    for (const n of ['attnNorm.rstd', 'mla.kvUp', 'mla.probs', 'mlpNorm.x', 'attnPostNorm.x']) assert.ok(l1.includes(n), n);
    assert.ok(rep.filter((x) => x.record === 'layers.0').some((x) => x.name === 'mlp.act'));
    g.dispose(); m.dispose();
  });

  test('causal: logits at position s do not depend on later tokens', () => {
    const m = new MoEGPT(resolveConfig('tiny', { ...cfg, attention: 'gqa', numKvHeads: 1, headDim: 8 }), 2);
    const a = Int32Array.from({ length: 6 }, (_, i) => i + 1), b = a.slice(); b[4] = 40; b[5] = 50;
    const la = m.logits(a, 1, 6), lb = m.logits(b, 1, 6);
    const va = la.dataSync(), vb = lb.dataSync();
    assertClose(vb.slice(0, 4 * 64), va.slice(0, 4 * 64), 1e-6, 'positions 0..3');
    assert.ok(Math.abs(vb[5 * 64] - va[5 * 64]) > 1e-6, 'position 5 changes');
    tf.dispose([la, lb]); m.dispose();
  });

  test('two micro-batches at lossScale 1/2 accumulate the mean gradient', () => {
    const m = new MoEGPT(cfg, 2);
    const g1 = new GradStore(), g2 = new GradStore();
    m.forwardBackward(tokens, targets, B, S, defaultContext(), g1);
    m.forwardBackward(tokens, targets, B, S, defaultContext({ lossScale: 0.5 }), g2);
    m.forwardBackward(tokens, targets, B, S, defaultContext({ lossScale: 0.5 }), g2);
    for (const n of ['embedding.weight', 'layers.2.moe.router', 'layers.1.attn.wqA']) assertClose(g2.get(n)!.dataSync(), g1.get(n)!.dataSync(), 1e-5, n);
    g1.dispose(); g2.dispose(); m.dispose();
  });
});
