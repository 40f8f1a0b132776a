// The memory planner's goal (issue 6): at a budget of 30% of the no-recompute activation peak, the
// executed step of `tiny` fits with at most 10% added simulated step time, at pp=1 and pp=4; and the
// plan cache (memory/plan-cache.ts) that lets the trainer plan once instead of every step.
// Simulated bytes and seconds do not depend on the backend: one backend.
import { forEachBackend, assert, TEST_BACKENDS } from './support/backends.ts';
import { resolveConfig, type ConfigOverrides } from '../src/model/config.ts';
import { MoEGPT } from '../src/model/gpt.ts';
import { runTrainStep, type TrainStepOptions } from '../src/parallel/exec/train-step.ts';
import { toyMicroBatches } from '../src/parallel/exec/reference.ts';
import { planMemory } from '../src/parallel/memory/planner.ts';
import { cachedPlanMemory, clearPlanCache, planCacheStats } from '../src/parallel/memory/plan-cache.ts';
import { modelDescriptors } from '../src/parallel/memory/descriptors.ts';

const small = resolveConfig('tiny', {
  vocabSize: 64, hiddenSize: 32, numLayers: 3, numDenseLayers: 1, denseIntermediateSize: 48, numHeads: 2, numKvHeads: 2, headDim: 16,
  mla: { qLoraRank: 16, kvLoraRank: 8, qkNopeHeadDim: 8, qkRopeHeadDim: 4, vHeadDim: 8 }, numMtpLayers: 0,
  moe: { numExperts: 16, topk: 4, expertHiddenSize: 16 },
} as ConfigOverrides);
const B = 2, S = 32;

forEachBackend('memory-planner-goal', (test) => {
  test('planner at 30% of the no-recompute peak on tiny: fits, ≤ 10% added step time (pp=1 and pp=4)', async () => {
    // tiny at batch 2 × seq 128 (the benchmark uses 4 × 256); measured +1.9% (pp=1, 2 micro-batches), +0.9% (pp=4, 1F1B over 4)
    const cfg = resolveConfig('tiny');
    const model = new MoEGPT(cfg, 1);
    for (const [pp, M] of [[1, 2], [4, 4]]) {
      const micro = toyMicroBatches(M, 2, 128, cfg.vocabSize);
      const run = async (o: Partial<TrainStepOptions>) => {
        for (const l of model.moeLayers()) l.resetGlobalAux();
        const r = await runTrainStep(model, { pp, microBatches: micro, gantt: false, ...o });
        r.grads.dispose();
        return r;
      };
      const none = await run({});
      const base = Math.max(...none.peakActivationBytes), budget = Math.floor(0.3 * base);
      const r = await run({ memoryBudget: budget });
      const peak = Math.max(...r.peakActivationBytes), added = r.stepTimeSeconds / none.stepTimeSeconds - 1;
      assert.ok(peak <= budget, `pp=${pp}: peak ${peak} B fits the budget ${budget} B`);
      assert.ok(added >= 0 && added <= 0.10, `pp=${pp}: added step time +${(100 * added).toFixed(2)}% ≤ 10%`);
      assert.ok(r.planner.every((p) => p.fits), `pp=${pp}: every rank's plan fits`);
      const predPeak = Math.max(...r.predicted.map((c) => c.peakBytes));
      assert.ok(Math.abs(predPeak - peak) <= 1e-9 * peak, `pp=${pp}: predicted peak ${predPeak}, executed ${peak}`);
    }
    model.dispose();
  });

  test('plan cache: same result as planMemory, computed once', async () => {
    clearPlanCache();
    const descs = modelDescriptors(small, { seqLen: S, microBatchSize: B });
    const o = { flops: 1e12, hostBandwidth: 2e10, inFlight: 1, budgetBytes: 0.4 * descs.reduce((a, d) => a + d.bytes, 0) };
    const want = planMemory(descs, o);
    const a = cachedPlanMemory(descs, o), b = cachedPlanMemory(descs, o);
    assert.equal(a, want);
    assert.equal(b, want);
    assert.equal(planCacheStats(), { hits: 1, misses: 1, size: 1 });
    cachedPlanMemory(descs, { ...o, budgetBytes: 0.5 * o.budgetBytes });
    assert.equal(planCacheStats(), { hits: 1, misses: 2, size: 2 });
    // a timing without a fingerprint is never cached
    cachedPlanMemory(descs, { ...o, timing: { opSeconds: (f) => f / 1e12, launch: 0, copySeconds: (b) => b / 2e10 }, swapWindow: 'microbatch' });
    assert.equal(planCacheStats(), { hits: 1, misses: 3, size: 2 });
    // the trainer's path: a second step with the same shapes and budget reuses the plan
    const model = new MoEGPT(small, 3);
    const mbs = toyMicroBatches(2, B, S, 64);
    const step = async (o: Partial<TrainStepOptions>) => {
      const r = await runTrainStep(model, { pp: 1, microBatches: mbs, gantt: false, ...o });
      r.grads.dispose();
      return r;
    };
    const budget = Math.floor(0.4 * (await step({})).peakActivationBytes[0]);
    const r1 = await step({ memoryBudget: budget });
    const before = planCacheStats();
    const r2 = await step({ memoryBudget: budget });
    assert.is(planCacheStats().hits, before.hits + 1, 'second step: cache hit');
    assert.is(planCacheStats().misses, before.misses, 'second step: no planning');
    assert.equal(r2.plan, r1.plan);
    assert.is(r2.peakActivationBytes[0], r1.peakActivationBytes[0]);
    model.dispose();
  });
}, TEST_BACKENDS.slice(-1));
