// The planner's cost model against the executor: for several plans on a shrunken model, the peak of
// resident saved activations and the added step time the cost model predicts (evaluatePlan: the
// lifecycle replay and the event replay of one micro-batch) equal what runTrainStep executes
// (SavedLedger peak, timeline makespan). Both follow the same rules (release points, one-layer-ahead
// prefetch, lazy recompute as the backward reads, early release after the last read, full-duplex host copies), so the tolerance is tight.
import { forEachBackend, assert, TEST_BACKENDS } from './support/backends.ts';
import { resolveConfig, type ConfigOverrides } from '../src/model/config.ts';
import { MoEGPT } from '../src/model/gpt.ts';
import { runTrainStep, type TrainStepOptions } from '../src/parallel/exec/train-step.ts';
import { toyMicroBatches } from '../src/parallel/exec/reference.ts';

const cfg = resolveConfig('tiny', {
  vocabSize: 64, hiddenSize: 32, numLayers: 3, numDenseLayers: 1, denseIntermediateSize: 48, numHeads: 2, numKvHeads: 2, headDim: 16,
  mla: { qLoraRank: 16, kvLoraRank: 8, qkNopeHeadDim: 8, qkRopeHeadDim: 4, vHeadDim: 8 }, numMtpLayers: 0,
  moe: { numExperts: 16, topk: 4, expertHiddenSize: 16, inputJitterEps: 0.01 },
} as ConfigOverrides);
const B = 2, S = 32, M = 2;
const mbs = toyMicroBatches(M, B, S, 64);

const PLANS: [string, Partial<TrainStepOptions>][] = [
  ['pangu selective', { recompute: 'mla_up_proj,moe_act,mlp_act,norm,permute' }],
  ['core_attn + expert_fc1', { recompute: 'core_attn,expert_fc1' }],
  ['full', { recompute: 'full' }],
  ['full, groups of 2', { recompute: 'full', recomputeNumLayers: 2 }],
  ['swap core_attn', { swap: 'core_attn' }],
  ['swap + recompute', { recompute: 'norm,permute', swap: 'core_attn,expert_fc1,residual' }],
];

forEachBackend('memory-plan-executed', (test) => {
  test('pp=1: predicted peak and added step time equal the executed ones', async () => {
    const model = new MoEGPT(cfg, 3);
    const run = async (o: Partial<TrainStepOptions>) => {
      for (const l of model.moeLayers()) l.resetGlobalAux();
      const r = await runTrainStep(model, { pp: 1, microBatches: mbs, gantt: false, ...o });
      r.grads.dispose();
      return { peak: r.peakActivationBytes[0], step: r.stepTimeSeconds, pred: r.predicted[0] };
    };
    const none = await run({});
    assert.ok(Math.abs(none.pred.peakBytes - none.peak) <= 1e-9 * none.peak, `no plan: predicted ${none.pred.peakBytes} B, executed ${none.peak} B`);
    const rows: [string, Partial<TrainStepOptions>][] = [...PLANS, ['planner, 40% budget', { memoryBudget: Math.floor(0.4 * none.peak) }]];
    for (const [name, o] of rows) {
      const r = await run(o);
      const added = r.step / none.step - 1;
      assert.ok(r.peak < none.peak, `${name}: the plan lowers the peak`);
      // peak: the lifecycle replay is exact (same bytes, same order)
      assert.ok(Math.abs(r.pred.peakBytes - r.peak) <= 1e-9 * r.peak, `${name}: predicted peak ${r.pred.peakBytes} B, executed ${r.peak} B`);
      // time: the event replay of one micro-batch; M micro-batches run back to back at pp=1
      assert.ok(Math.abs(r.pred.addedFraction - added) <= 1e-6, `${name}: predicted +${(100 * r.pred.addedFraction).toFixed(3)}%, executed +${(100 * added).toFixed(3)}%`);
      if (o.memoryBudget) assert.ok(r.peak <= o.memoryBudget, `${name}: fits its budget`);
    }
    model.dispose();
  });

  test('pp=2 (1F1B, 4 micro-batches): predicted peak per rank equals the executed one, and the step time', async () => {
    const model = new MoEGPT(cfg, 3);
    const mb4 = toyMicroBatches(4, B, S, 64);
    for (const [name, o] of [['none', {}], ...PLANS.slice(0, 3), PLANS[5]] as [string, Partial<TrainStepOptions>][]) {
      for (const l of model.moeLayers()) l.resetGlobalAux();
      const r = await runTrainStep(model, { pp: 2, microBatches: mb4, gantt: false, ...o });
      r.grads.dispose();
      // step: the pipeline simulator over the ranks' predicted F and B + added times. Exact without swap;
      // with swap an upper bound (the replay ignores the other micro-batches' passes that also hide copies)
      const ratio = r.predictedStepSeconds / r.stepTimeSeconds;
      if (!o.swap) assert.ok(Math.abs(ratio - 1) <= 1e-6, `${name}: predicted step ${r.predictedStepSeconds}, executed ${r.stepTimeSeconds}`);
      else assert.ok(ratio >= 1 - 1e-9 && ratio <= 1.2, `${name}: predicted step ${r.predictedStepSeconds}, executed ${r.stepTimeSeconds}`);
      r.peakActivationBytes.forEach((peak, rank) => {
        const p = r.predicted[rank].peakBytes;
        assert.ok(Math.abs(p - peak) <= 1e-9 * peak, `${name} rank ${rank}: predicted ${p} B, executed ${peak} B`);
      });
    }
    model.dispose();
  });
}, TEST_BACKENDS.slice(-1)); // simulated bytes and seconds do not depend on the backend: one is enough
