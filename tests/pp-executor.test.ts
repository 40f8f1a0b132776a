// Pipeline executor on the simulated cluster: PP 2 and 4 (1F1B, GPipe), VPP 2 (interleaved), 4-8
// micro-batches. Loss and gradients equal single-device forwardBackward over the same micro-batches.
//
// Tolerance: the loss is exact (same per-micro-batch forward ops, averaged in the same order).
// Gradients ≤ 1e-5 relative: each stage accumulates its own weights' gradients in micro-batch order,
// exactly like the reference, but a weight used on two stages (the embedding, used by the first stage
// and by the MTP module on the last) gets (Σ_m first) + (Σ_m last) via the all-reduce instead of the
// reference's interleaved Σ_m (first_m + last_m): float32 summation order, ~1e-7 measured.
//
// Bubble: with uniform stages (all layers MoE, embedding/head uncharged, p2p free) the bubble measured
// on the executed timeline is (p−1)/m for 1F1B/GPipe and (p−1)/(v·m) for interleaved (asserted ≤ 5%).
import { forEachBackend, tf, assert, assertClose } from './support/backends.ts';
import { resolveConfig, type ConfigOverrides } from '../src/model/config.ts';
import { MoEGPT } from '../src/model/gpt.ts';
import { getSpec } from '../src/device/index.ts';
import { runTrainStep, type ScheduleKind } from '../src/parallel/exec/train-step.ts';
import { referenceStep, gradArrays, toyMicroBatches } from '../src/parallel/exec/reference.ts';

const small: ConfigOverrides = {
  vocabSize: 64, hiddenSize: 32, numLayers: 4, numDenseLayers: 1, denseIntermediateSize: 48, numHeads: 2, numKvHeads: 1, headDim: 8,
  mla: { qLoraRank: 16, kvLoraRank: 8, qkNopeHeadDim: 8, qkRopeHeadDim: 4, vHeadDim: 8 }, numMtpLayers: 1,
  moe: { numExperts: 16, topk: 2, expertHiddenSize: 8, auxLoss: [{ type: 'global', coeff: 1e-2 }], zLossCoeff: 1e-3 },
} as ConfigOverrides;

forEachBackend('pp-executor', (test) => {
  const cfg = resolveConfig('tiny', small);
  const cases: [ScheduleKind, number, number, number][] = [['1f1b', 2, 1, 4], ['1f1b', 4, 1, 8], ['gpipe', 2, 1, 4], ['interleaved', 2, 2, 4]];
  test('PP 2/4, GPipe, VPP 2: loss exact, gradients ≤ 1e-5 relative to single-device forwardBackward', async () => {
    const model = new MoEGPT(cfg, 11);
    const fresh = () => { for (const l of model.moeLayers()) l.resetGlobalAux(); };
    for (const [schedule, pp, vpp, M] of cases) {
      const mbs = toyMicroBatches(M, 2, 8, 64, pp);
      fresh();
      const ref = referenceStep(model, mbs);
      const refG = gradArrays(ref.grads); ref.grads.dispose();
      fresh();
      const n0 = tf.memory().numTensors;
      const r = await runTrainStep(model, { pp, vpp, schedule, microBatches: mbs, gantt: false });
      const what = `${schedule} pp=${pp} vpp=${vpp} M=${M}`;
      assert.is(r.loss, ref.loss, `${what}: loss`);
      assert.is(r.run.reports.map((x) => x.auxLoss).join(), ref.reports.map((x) => x.auxLoss).join(), `${what}: aux losses`);
      const g = gradArrays(r.grads); r.grads.dispose();
      assert.is(g.size, refG.size);
      for (const [n, want] of refG) assertClose(g.get(n)!, want, 1e-5, `${what}: grad ${n}`);
      assert.is(tf.memory().numTensors, n0, `${what}: no tensor leaks`);
      // 1F1B keeps min(p − r, M) micro-batches in flight on rank r, GPipe all M
      if (schedule === '1f1b') assert.equal(r.run.peakInFlight, Array.from({ length: pp }, (_, k) => Math.min(pp - k, M)));
      if (schedule === 'gpipe') assert.equal(r.run.peakInFlight, Array(pp).fill(M));
      // each rank's HBM held its weights, gradients and activations
      for (const peak of r.perDevicePeakByCategory) assert.ok(peak.weights > 0 && peak.gradients > 0 && peak.activations > 0);
    }
    model.dispose();
  });

  test('PP with recompute and swap together still matches', async () => {
    const model = new MoEGPT(cfg, 11);
    const mbs = toyMicroBatches(4, 2, 8, 64, 9);
    const ref = referenceStep(model, mbs);
    const refG = gradArrays(ref.grads); ref.grads.dispose();
    for (const l of model.moeLayers()) l.resetGlobalAux();
    const r = await runTrainStep(model, { pp: 2, vpp: 2, schedule: 'interleaved', microBatches: mbs, recompute: 'core_attn,moe_act,permute', swap: 'norm,residual', gantt: false });
    assert.is(r.loss, ref.loss);
    const g = gradArrays(r.grads); r.grads.dispose();
    for (const [n, want] of refG) assertClose(g.get(n)!, want, 1e-5, `grad ${n}`);
    for (const led of r.run.ledgers) assert.equal(led.reloadProblems(), []);
    model.dispose();
  });

  test('measured bubble = (p−1)/m and (p−1)/(v·m) on uniform stages', async () => {
    const uniform = resolveConfig('tiny', { ...small, numLayers: 8, numDenseLayers: 0, numMtpLayers: 0 } as ConfigOverrides);
    const model = new MoEGPT(uniform, 3);
    const base = getSpec('ascend-910b');
    const spec = { ...base, intraNode: { ...base.intraNode, latency: 0, bandwidth: 1e30 } }; // p2p free: the bubble is the schedule's
    const runs: [ScheduleKind, number, number, number][] = [['1f1b', 4, 1, 8], ['gpipe', 4, 1, 8], ['1f1b', 2, 1, 4], ['interleaved', 4, 2, 8], ['interleaved', 2, 2, 4]];
    for (const [schedule, pp, vpp, M] of runs) {
      const r = await runTrainStep(model, { pp, vpp, schedule, microBatches: toyMicroBatches(M, 1, 4, 64), spec, chargeEmbeddingHead: false, gantt: false });
      r.grads.dispose();
      const want = (pp - 1) / (vpp * M);
      assert.ok(Math.abs(r.bubbleFraction - want) <= 0.05 * want, `${schedule} p=${pp} v=${vpp} m=${M}: bubble ${r.bubbleFraction} vs ${want}`);
    }
    const r = await runTrainStep(model, { pp: 2, vpp: 2, schedule: 'interleaved', microBatches: toyMicroBatches(2, 1, 4, 64), spec });
    r.grads.dispose();
    assert.ok(r.ganttSvg.startsWith('<svg') && r.ganttSvg.includes('rank 1 compute'), 'Gantt SVG');
    assert.ok(r.trace.traceEvents.length > 0, 'Perfetto trace');
    model.dispose();
  });
}, ['wasm']);
