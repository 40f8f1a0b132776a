// Recompute executor: every selective option and full-layer recomputation give the gradients of no
// recomputation, count router statistics and aux losses once, and lower the peak of resident saved
// activations (measured by the SavedActivations ledger on the simulated device).
//
// Tolerance: bitwise (rtol 0). A recipe reruns the exact forward ops on the exact saved inputs (same
// kernels, same order, same seed), and the full-layer replay reuses the original routing plan, so
// nothing can differ; any difference would be a bug (e.g. a recipe that reads a different tensor).
import { forEachBackend, tf, assert, assertClose } from './support/backends.ts';
import { resolveConfig, type ConfigOverrides } from '../src/model/config.ts';
import { MoEGPT } from '../src/model/gpt.ts';
import { Cluster, getSpec } from '../src/device/index.ts';
import { makePlan, type RecomputePolicy } from '../src/parallel/memory/policy.ts';
import type { ModuleClass } from '../src/parallel/memory/descriptors.ts';
import { partitionLayers } from '../src/parallel/pipeline/partition.ts';
import { schedule1F1B } from '../src/parallel/pipeline/schedule.ts';
import { runPipeline } from '../src/parallel/exec/pipeline-executor.ts';
import { execLayout } from '../src/parallel/exec/layout.ts';
import { referenceStep, gradArrays, toyMicroBatches } from '../src/parallel/exec/reference.ts';
import type { ForwardContext } from '../src/model/module.ts';
import { planHook } from '../src/parallel/exec/memory-executor.ts';
import { SavedLedger } from '../src/parallel/exec/saved-ledger.ts';

const base: ConfigOverrides = {
  vocabSize: 64, hiddenSize: 32, numLayers: 3, numDenseLayers: 1, denseIntermediateSize: 48, numHeads: 2, numKvHeads: 1, headDim: 8,
  mla: { qLoraRank: 16, kvLoraRank: 8, qkNopeHeadDim: 8, qkRopeHeadDim: 4, vHeadDim: 8 }, numMtpLayers: 1,
  moe: { numExperts: 16, topk: 2, expertHiddenSize: 8, numSharedExperts: 1, inputJitterEps: 0.01,
    auxLoss: [{ type: 'global', coeff: 1e-2 }, { type: 'seq', coeff: 1e-3 }], zLossCoeff: 1e-3 },
} as ConfigOverrides;
const B = 2, S = 8, M = 2;

function statsKey(ctxs: ForwardContext[]): string {
  return JSON.stringify(ctxs.map((c) => c.routerStats.map((s) => [s.layer, [...s.tokensPerExpert], s.droppedAssignments, s.auxLosses])));
}
const moeCounts = (m: MoEGPT) => m.moeLayers().map((l) => [...(l as unknown as { localTokensPerExpert: Float64Array }).localTokensPerExpert]);

forEachBackend('recompute-executor', (test) => {
  for (const attention of ['mla', 'gqa'] as const) {
    const cfg = resolveConfig('tiny', { ...base, attention });
    const lay = execLayout(cfg, B, S);
    const mbs = toyMicroBatches(M, B, S, 64);
    const selective: ModuleClass[] = attention === 'mla'
      ? ['norm', 'mla_down_proj', 'mla_up_proj', 'core_attn', 'attn_proj', 'permute', 'expert_fc1', 'moe_act', 'mlp_fc1', 'mlp_act', 'router']
      : ['norm', 'qkv_linear', 'core_attn', 'attn_proj', 'permute', 'moe_act', 'mlp_act'];
    const policies: [string, RecomputePolicy][] = [
      ...selective.map((c): [string, RecomputePolicy] => [c, { recomputeGranularity: 'selective', recomputeModules: [c] }]),
      ['pangu-selective', { recomputeGranularity: 'selective', recomputeModules: ['mla_up_proj', 'moe_act', 'mlp_act', 'norm', 'permute', 'qkv_linear'] }],
      ['full', { recomputeGranularity: 'full' }],
      ['full, groups of 2', { recomputeGranularity: 'full', recomputeMethod: 'uniform', recomputeNumLayers: 2 }],
    ];
    test(`${attention}: each selective option and full recompute → bitwise gradients, stats once, lower peak`, () => {
      const model = new MoEGPT(cfg, 5);
      // the 'global' aux loss tracks counts over a global batch: every run starts a new one
      const fresh = () => { for (const l of model.moeLayers()) l.resetGlobalAux(); };
      fresh();
      const c0 = moeCounts(model);
      const ref = referenceStep(model, mbs);
      const refCounts = moeCounts(model).map((v, i) => v.map((x, e) => x - c0[i][e]));
      const refG = gradArrays(ref.grads); ref.grads.dispose();
      const run = (policy: RecomputePolicy | null) => {
        const cluster = new Cluster({ spec: getSpec('ascend-910b'), nodes: 1, devicesPerNode: 1 });
        fresh();
        const before = moeCounts(model);
        const res = runPipeline({
          model, cluster, schedule: schedule1F1B(1, M), partition: partitionLayers([...lay.layerFlops.values()], 1, 1),
          microBatches: mbs, costs: lay.costs, plan: policy ? makePlan(lay.descs, policy) : null, recomputeFlops: lay.recomputeFlops,
        });
        const counts = moeCounts(model).map((v, i) => v.map((x, e) => x - before[i][e]));
        const g = gradArrays(res.grads); res.grads.dispose();
        return { res, g, counts, peak: res.ledgers[0].peakResidentBytes, hbm: cluster.device(0).hbm.peakBy('activations') };
      };
      const none = run(null);
      for (const [n, g] of refG) assertClose(none.g.get(n)!, g, 0, `no plan ${n}`);
      const n0 = tf.memory().numTensors;
      for (const [label, policy] of policies) {
        const r = run(policy);
        assert.is(r.res.loss, ref.loss, `${label}: loss`);
        for (const [n, g] of refG) assertClose(r.g.get(n)!, g, 0, `${label}: grad ${n}`);
        assert.is(statsKey(r.res.contexts), statsKey(ref.contexts), `${label}: router stats and aux losses counted once`);
        assert.equal(r.counts, refCounts, `${label}: expert counts counted once`);
        const recomputed = [...r.res.ledgers[0].recomputes.values()].reduce((a, b) => a + b, 0);
        if (!label.startsWith('full')) assert.ok(recomputed > 0, `${label}: something was recomputed`);
        assert.ok(r.peak < none.peak, `${label}: peak saved bytes ${r.peak} < ${none.peak}`);
        assert.ok(r.hbm < none.hbm, `${label}: HBM activations peak ${r.hbm} < ${none.hbm}`);
      }
      assert.is(tf.memory().numTensors, n0, 'no tensor leaks');
      model.dispose();
    });
  }

  test('planHook on plain MoEGPT.forwardBackward: selective drops + host moves → bitwise gradients', () => {
    const cfg = resolveConfig('tiny', base);
    const lay = execLayout(cfg, B, S);
    const mbs = toyMicroBatches(M, B, S, 64);
    const model = new MoEGPT(cfg, 5);
    const fresh = () => { for (const l of model.moeLayers()) l.resetGlobalAux(); };
    fresh();
    const ref = referenceStep(model, mbs);
    const refG = gradArrays(ref.grads); ref.grads.dispose();
    const ledger = new SavedLedger();
    const plan = makePlan(lay.descs, { recomputeGranularity: 'selective', recomputeModules: ['core_attn', 'mla_up_proj', 'permute', 'moe_act'] },
      { offloadModules: ['residual', 'expert_fc1'] });
    model.onForwardDone = (recs) => { for (const r of recs) if (/^layers\./.test(r.owner)) ledger.attach(r); planHook(plan, ledger)(recs); };
    fresh();
    const got = referenceStep(model, mbs);
    model.onForwardDone = null;
    const g = gradArrays(got.grads); got.grads.dispose();
    assert.is(got.loss, ref.loss);
    for (const [n, want] of refG) assertClose(g.get(n)!, want, 0, `hook: grad ${n}`);
    assert.ok(ledger.swappedOut.size > 0 && ledger.reloadProblems().length === 0, 'swapped entries reloaded once');
    model.dispose();
  });
}, ['wasm']);
