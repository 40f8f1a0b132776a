// Early release of saved activations: the module backwards call SavedActivations.release after each
// entry's last read, so a layer's saved tensors are not all live through its backward.
//   - gradients are bitwise equal to keeping every entry until the layer's end (earlyRelease off);
//   - the SavedLedger peak drops by exactly the bytes the lifecycle replay predicts (replay with and
//     without releases, simulateLifecycle `release`), and each executed peak equals its prediction;
//   - the replay is exact for layer kinds memory-plan-executed does not cover (GQA, MLA without
//     q-LoRA, shared-expert gate, pre-norm);
// Simulated bytes and seconds do not depend on the backend: one backend.
import { forEachBackend, assert, TEST_BACKENDS } from './support/backends.ts';
import { resolveConfig, type ConfigOverrides, type ModelConfig } from '../src/model/config.ts';
import { MoEGPT } from '../src/model/gpt.ts';
import { SavedActivations } from '../src/model/saved.ts';
import { runTrainStep, type TrainStepOptions } from '../src/parallel/exec/train-step.ts';
import { gradArrays, toyMicroBatches } from '../src/parallel/exec/reference.ts';
import { execLayout } from '../src/parallel/exec/layout.ts';
import { simulateLifecycle } from '../src/parallel/memory/lifecycle.ts';

const SMALL = {
  vocabSize: 64, hiddenSize: 32, numLayers: 3, numDenseLayers: 1, denseIntermediateSize: 48, numHeads: 2, numKvHeads: 2, headDim: 16,
  mla: { qLoraRank: 16, kvLoraRank: 8, qkNopeHeadDim: 8, qkRopeHeadDim: 4, vHeadDim: 8 }, numMtpLayers: 0,
  moe: { numExperts: 16, topk: 4, expertHiddenSize: 16, inputJitterEps: 0.01 },
};
const mla = resolveConfig('tiny', SMALL as ConfigOverrides);
const B = 2, S = 32;
const mbs = toyMicroBatches(2, B, S, 64);

async function step(model: MoEGPT, o: Partial<TrainStepOptions>, release = true) {
  for (const l of model.moeLayers()) l.resetGlobalAux();
  SavedActivations.earlyRelease = release;
  try {
    const r = await runTrainStep(model, { pp: 1, microBatches: mbs, gantt: false, ...o });
    const grads = gradArrays(r.grads);
    r.grads.dispose();
    return { r, grads, peak: r.peakActivationBytes[0] };
  } finally { SavedActivations.earlyRelease = true; }
}

/** The lifecycle's peak for the executed plan at pp=1 (one micro-batch in flight), with or without releases. */
function predictedPeak(cfg: ModelConfig, plan: Awaited<ReturnType<typeof step>>['r']['plan'], release: boolean): number {
  const lay = execLayout(cfg, B, S);
  const p = plan ?? { entries: lay.descs.map((d) => ({ ...d, decision: 'keep' as const })), fullLayers: [] };
  return simulateLifecycle(p, { inFlight: 1, preBytes: lay.preBytes, postBytes: lay.postBytes, release }).peakBytes;
}

forEachBackend('memory-early-release', (test) => {
  test('early release: bitwise gradients, peak lower by the predicted bytes', async () => {
    const model = new MoEGPT(mla, 3);
    const none = await step(model, {});
    const plans: [string, Partial<TrainStepOptions>][] = [
      ['none', {}],
      ['expert_fc1 + moe_act + permute', { recompute: 'expert_fc1,moe_act,permute' }],
      ['pangu selective', { recompute: 'mla_up_proj,moe_act,mlp_act,norm,permute' }],
      ['swap + recompute', { recompute: 'norm,permute', swap: 'core_attn,expert_fc1,residual' }],
      ['planner 30%', { memoryBudget: Math.floor(0.3 * none.peak) }],
    ];
    let lowered = 0;
    for (const [name, o] of plans) {
      const on = await step(model, o, true), off = await step(model, o, false);
      for (const [n, want] of off.grads) {
        const got = on.grads.get(n)!;
        assert.ok(got.length === want.length && got.every((v, i) => v === want[i]), `${name}: gradient ${n} bitwise equal with early release`);
      }
      for (const [n, want] of none.grads) assert.ok(on.grads.get(n)!.every((v, i) => v === want[i]), `${name}: gradient ${n} bitwise equal to no plan`);
      const pOn = predictedPeak(mla, on.r.plan, true), pOff = predictedPeak(mla, off.r.plan, false);
      assert.is(on.peak, pOn, `${name}: executed peak with release = predicted`);
      assert.is(off.peak, pOff, `${name}: executed peak without release = predicted`);
      assert.is(off.peak - on.peak, pOff - pOn, `${name}: release lowers the peak by the predicted bytes`);
      assert.ok(on.peak <= off.peak, `${name}: release never raises the peak`);
      if (on.peak < off.peak) lowered++;
      // the same simulated time: releases cost nothing
      assert.is(on.r.stepTimeSeconds, off.r.stepTimeSeconds, `${name}: step time unchanged`);
    }
    // without a plan the peak is the end of the forward (everything kept); with rebuilds in backward
    // (expert_fc1 + moe_act + permute at least) release lowers it
    assert.ok(lowered >= 1, `release lowered the peak of ${lowered} plans`);
    model.dispose();
  });

  test('lifecycle replay exact for GQA, MLA without q-LoRA, shared-expert gate, pre-norm', async () => {
    const variants: [string, ConfigOverrides][] = [
      ['gqa + gate + sandwich', { ...SMALL, attention: 'gqa', moe: { ...SMALL.moe, sharedExpertGate: true } } as ConfigOverrides],
      ['mla without q-LoRA, pre-norm, no jitter', { ...SMALL, norm: 'pre', mla: { ...SMALL.mla, qLoraRank: null }, moe: { ...SMALL.moe, inputJitterEps: 0 } } as ConfigOverrides],
    ];
    for (const [vname, over] of variants) {
      const cfg = resolveConfig('tiny', over);
      const model = new MoEGPT(cfg, 5);
      const none = await step(model, {});
      for (const [name, o] of [
        ['all selective classes', { recompute: 'norm,mla_down_proj,mla_up_proj,qkv_linear,core_attn,attn_proj,router,permute,expert_fc1,moe_act,mlp_fc1,mlp_act' }],
        ['swap + recompute', { recompute: 'core_attn,moe_act', swap: 'residual,qkv_linear,mla_up_proj,expert_fc1' }],
        ['planner 35%', { memoryBudget: Math.floor(0.35 * none.peak) }],
      ] as [string, Partial<TrainStepOptions>][]) {
        const r = await step(model, o);
        const pred = r.r.predicted[0];
        assert.ok(Math.abs(pred.peakBytes - r.peak) <= 1e-9 * r.peak, `${vname}, ${name}: predicted peak ${pred.peakBytes} B, executed ${r.peak} B`);
        const added = r.r.stepTimeSeconds / none.r.stepTimeSeconds - 1;
        assert.ok(Math.abs(pred.addedFraction - added) <= 1e-6, `${vname}, ${name}: predicted +${pred.addedFraction}, executed +${added}`);
        for (const [n, want] of none.grads) assert.ok(r.grads.get(n)!.every((v, i) => v === want[i]), `${vname}, ${name}: gradient ${n} bitwise`);
      }
      model.dispose();
    }
  });

}, TEST_BACKENDS.slice(-1));
