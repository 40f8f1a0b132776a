// Data parallelism (with EP inside): gradients all-reduced over DP (dense) and expert-DP (experts), or
// reduce-scattered into a sharded (distributed) AdamW; weights equal single-device training after 3
// optimizer steps; gradient-sync bytes equal the ring formula 2(n−1)/n · S per rank (perf-model §2.6);
// per-device memory ledgers show sharded experts and sharded optimizer state.
// Tolerance 1e-5 relative (max |Δ| / max |ref| per tensor): float32 reassociation of split reductions
// (see parallel-ep.test.ts); AdamW divides by sqrt(v), which keeps relative gradient errors relative.
import { forEachBackend, assert, assertClose } from './support/backends.ts';
import { resolveConfig, type ModelConfig } from '../src/model/config.ts';
import { MoEGPT } from '../src/model/gpt.ts';
import { AdamW } from '../src/train/optimizer.ts';
import { Cluster, getSpec } from '../src/device/index.ts';
import { ParallelModel } from '../src/parallel/parallel-model.ts';
import { DistributedAdamW } from '../src/parallel/dp/distributed-adamw.ts';
import { referenceStep } from '../src/parallel/reference.ts';
import { createParallelModel } from '../src/parallel/index.ts';

const RTOL = 1e-5, B = 8, S = 8, H = 32, E = 16, V = 64, LR = 1e-3;
const ADAM = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };

const cfg: ModelConfig = resolveConfig('tiny', {
  hiddenSize: H, numLayers: 2, numDenseLayers: 1, denseIntermediateSize: 64, numHeads: 2, numKvHeads: 2, headDim: 16, vocabSize: V,
  mla: { qLoraRank: 16, kvLoraRank: 16, qkNopeHeadDim: 8, qkRopeHeadDim: 8, vHeadDim: 8 },
  moe: { numExperts: E, topk: 4, expertHiddenSize: 16, auxLoss: [{ type: 'ep-group', coeff: 1e-2 }], zLossCoeff: 1e-3 },
});
const batch = (step: number) => ({
  tokens: Int32Array.from({ length: B * S }, (_, i) => (i * 7 + 3 + 11 * step) % V),
  targets: Int32Array.from({ length: B * S }, (_, i) => (i * 5 + 1 + 3 * step) % V),
});

/** Compare every parameter of every rank with the single-device model (experts: the owner's slice). */
function assertWeights(pm: ParallelModel, single: MoEGPT, what: string): void {
  for (const [name, p] of single.params.vars) {
    const want = p.dataSync();
    for (let r = 0; r < pm.layout.world; r++) {
      let w: ArrayLike<number> = want;
      if (pm.expertParams.has(name)) {
        const per = want.length / E, Eloc = E / pm.layout.ep, er = r % pm.layout.ep;
        w = want.slice(er * Eloc * per, (er + 1) * Eloc * per);
      }
      assertClose(pm.params[r].get(name).dataSync(), w, RTOL, `${what}: ${name} on rank ${r}`);
    }
  }
}

forEachBackend('parallel DP', (test) => {
  test('pure DP (dp=4) and EP inside DP (ep=2,dp=4): weights equal single device after 3 AdamW steps', () => {
    for (const layout of ['dp=4', 'ep=2,dp=4']) {
      const cluster = new Cluster({ spec: getSpec('ascend-910b'), nodes: 1 });
      const pm = new ParallelModel(cfg, cluster, { layout, seed: 5 });
      const opts = pm.params.map((p) => new AdamW(p, ADAM));
      const single = new MoEGPT(cfg, 5), opt = new AdamW(single.params, ADAM);
      for (let step = 0; step < 3; step++) {
        const { tokens, targets } = batch(step);
        const rep = pm.forwardBackward(tokens, targets, B, S, { microBatches: 2 });
        opts.forEach((o, r) => o.step(pm.grads[r], LR));
        pm.zeroGrad();
        const ref = referenceStep(single, pm.layout, tokens, targets, B, S, 2);
        assertClose([rep.loss], [ref.loss], RTOL, `${layout} loss at step ${step}`);
        opt.step(ref.grads, LR);
        ref.grads.dispose();
      }
      assertWeights(pm, single, layout);
      pm.dispose(); single.dispose();
    }
  });

  test('gradient all-reduce bytes = 2(n−1)/n · S per rank: dense over DP, experts over expert-DP', () => {
    const cluster = new Cluster({ spec: getSpec('ascend-910b'), nodes: 1 });
    const pm = new ParallelModel(cfg, cluster, { layout: 'ep=4,dp=8', seed: 5 });
    const { tokens, targets } = batch(0);
    pm.forwardBackward(tokens, targets, B, S);
    let dense = 0, expert = 0;
    for (const [name, v] of pm.params[0].vars) if (pm.expertParams.has(name)) expert += v.size * 4; else dense += v.size * 4;
    const dp = 8, edp = 2, led = cluster.commLedger;
    const byGroup = (group: string) => led.records.filter((r) => r.op === 'allReduce' && r.group === group && r.label.startsWith('dp.grads')).reduce((a, r) => a + r.bytes, 0);
    assert.is(byGroup('dp-cp'), dp * (2 * (dp - 1) / dp) * dense);              // 1 DP(×CP) group of 8 ranks
    assert.is(byGroup('edp'), 4 * edp * (2 * (edp - 1) / edp) * expert);        // 4 expert-DP groups of 2
    // memory: every rank holds the dense weights and a quarter of the experts
    const full = new MoEGPT(cfg, 5);
    let fullExpert = 0;
    for (const [name, v] of full.params.vars) if (pm.expertParams.has(name)) fullExpert += v.size * 4;
    assert.is(expert, fullExpert / 4);
    const s = pm.summary();
    assert.is(s.memory[3].byCategory.weights.peak, dense + expert);
    assert.is(s.memory[3].byCategory.gradients.used, dense + expert);
    assert.ok(s.memory[3].byCategory.activations.peak > 0);
    assert.is(s.commBytes, led.total());
    assert.ok(s.makespan > 0);
    full.dispose(); pm.dispose();
  });

  test('distributed optimizer (reduce-scatter + sharded AdamW + all-gather) equals replicated AdamW after 3 steps', () => {
    const make = (distributedOptimizer: boolean) => {
      const cluster = new Cluster({ spec: getSpec('ascend-910b'), nodes: 1 });
      return { cluster, pm: new ParallelModel(cfg, cluster, { layout: 'ep=2,dp=4', seed: 5, distributedOptimizer }) };
    };
    const a = make(false), b = make(true);
    const optsA = a.pm.params.map((p) => new AdamW(p, ADAM)), optB = new DistributedAdamW(b.pm, ADAM);
    let arBytes = 0, rsagBytes = 0;
    for (let step = 0; step < 3; step++) {
      const { tokens, targets } = batch(step);
      a.cluster.reset(); b.cluster.reset();
      a.pm.forwardBackward(tokens, targets, B, S); optsA.forEach((o, r) => o.step(a.pm.grads[r], LR)); a.pm.zeroGrad();
      b.pm.forwardBackward(tokens, targets, B, S); optB.step(LR); b.pm.zeroGrad();
      arBytes += a.cluster.commLedger.records.filter((r) => r.label.startsWith('dp.grads ')).reduce((x, r) => x + r.bytes, 0);
      rsagBytes += b.cluster.commLedger.records.filter((r) => r.label.startsWith('dp.grads.rs ') || r.label.startsWith('dp.params.ag ')).reduce((x, r) => x + r.bytes, 0);
    }
    for (const name of a.pm.params[0].names())
      for (let r = 0; r < 4; r++) assertClose(b.pm.params[r].get(name).dataSync(), a.pm.params[r].get(name).dataSync(), RTOL, `${name} on rank ${r}`);
    // same wire bytes as the all-reduce up to the zero padding of the shards (< n elements per parameter)
    const pad = a.pm.params[0].names().length * 4 * 4 * 2 * 3;
    assert.ok(rsagBytes >= arBytes && rsagBytes - arBytes <= 2 * pad * 4, `rs+ag ${rsagBytes} vs ar ${arBytes}`);
    // optimizer state: 2 moments of 1/n of each parameter (dense: n = 4, experts: expert-DP n = 2)
    let want = 0;
    for (const [name, v] of b.pm.params[0].vars) want += 2 * Math.ceil(v.size / (b.pm.expertParams.has(name) ? 2 : 4)) * 4;
    assert.is(optB.stateBytes(0), want);
    assert.is(b.cluster.device(0).hbm.usedBy('optimizer'), want);
    optB.dispose(); a.pm.dispose(); b.pm.dispose();
  });

  test('createParallelModel sizes the cluster to the layout (the CLI entry point)', () => {
    const { model, cluster } = createParallelModel(cfg, { parallel: 'ep=4,dp=8', seed: 5, device: 'ascend-910b', devicesPerNode: 4, dtype: 'bf16' });
    assert.is(cluster.nodes, 2);
    const r = model.forwardBackward(batch(0).tokens, batch(0).targets, B, S);
    assert.ok(Number.isFinite(r.loss));
    let bytes = 0;
    for (const v of model.params[0].vars.values()) bytes += v.size * 2;       // bf16 weights
    assert.is(model.summary().memory[0].byCategory.weights.used, bytes);
    assert.throws(() => createParallelModel(cfg, { parallel: 'ep=3,dp=4', seed: 5 }), /numExperts 16 is not divisible by ep=3/);
    model.dispose();
  });
}, ['wasm']);
