// Swap executor: saved activations go to host memory after their forward use and come back (prefetched)
// before their backward use. Gradients are bitwise those without swapping (the host copy is the exact
// float32 data), device memory goes down by exactly the bytes host memory goes up (ledgers), every
// swapped tensor is reloaded exactly once, the copies run on the host-copy streams (D2H, H2D) overlapping compute,
// and minOffloadSize / offloadFraction select what moves.
import { forEachBackend, tf, assert, assertClose } from './support/backends.ts';
import { resolveConfig, type ConfigOverrides } from '../src/model/config.ts';
import { MoEGPT } from '../src/model/gpt.ts';
import { GradStore } from '../src/model/module.ts';
import { Cluster, getSpec } from '../src/device/index.ts';
import { makePlan, type SwapPolicy } from '../src/parallel/memory/policy.ts';
import { partitionLayers } from '../src/parallel/pipeline/partition.ts';
import { schedule1F1B } from '../src/parallel/pipeline/schedule.ts';
import { runPipeline } from '../src/parallel/exec/pipeline-executor.ts';
import { execLayout } from '../src/parallel/exec/layout.ts';
import { referenceStep, gradArrays, toyMicroBatches } from '../src/parallel/exec/reference.ts';
import { MemoryExecutor } from '../src/parallel/exec/memory-executor.ts';
import { SavedLedger } from '../src/parallel/exec/saved-ledger.ts';
import { ChunkRunner } from '../src/parallel/exec/stage-runner.ts';

const cfg = resolveConfig('tiny', {
  vocabSize: 64, hiddenSize: 32, numLayers: 3, numDenseLayers: 1, denseIntermediateSize: 48, numHeads: 2, numKvHeads: 1, headDim: 8,
  mla: { qLoraRank: 16, kvLoraRank: 8, qkNopeHeadDim: 8, qkRopeHeadDim: 4, vHeadDim: 8 }, numMtpLayers: 1,
  moe: { numExperts: 16, topk: 2, expertHiddenSize: 8 },
} as ConfigOverrides);
const B = 2, S = 8, M = 2;
const lay = execLayout(cfg, B, S);
const mbs = toyMicroBatches(M, B, S, 64);
const everything: SwapPolicy = { offloadModules: ['residual', 'norm', 'mla_down_proj', 'mla_up_proj', 'core_attn', 'attn_proj', 'permute', 'expert_fc1', 'moe_act', 'mlp_fc1', 'mlp_act'] };

forEachBackend('swap-executor', (test) => {
  test('swapping → bitwise gradients, each tensor reloaded exactly once, copies overlap compute', () => {
    const model = new MoEGPT(cfg, 7);
    const ref = referenceStep(model, mbs);
    const refG = gradArrays(ref.grads); ref.grads.dispose();
    const cluster = new Cluster({ spec: getSpec('ascend-910b'), nodes: 1, devicesPerNode: 1 });
    const n0 = tf.memory().numTensors;
    const res = runPipeline({ model, cluster, schedule: schedule1F1B(1, M), partition: partitionLayers([...lay.layerFlops.values()], 1, 1),
      microBatches: mbs, costs: lay.costs, plan: makePlan(lay.descs, undefined, everything) });
    const g = gradArrays(res.grads); res.grads.dispose();
    assert.is(res.loss, ref.loss);
    for (const [n, want] of refG) assertClose(g.get(n)!, want, 0, `grad ${n}`);
    const led = res.ledgers[0];
    assert.ok(led.swappedOut.size > 0);
    assert.equal(led.reloadProblems(), [], 'every swapped tensor reloaded exactly once');
    for (const [k, n] of led.reloads) assert.is(n, 1, `${k} reloaded once`);
    assert.is(cluster.hosts[0].usedBy('swapped'), 0, 'host memory returned');
    const copies = cluster.timeline.events.filter((e) => e.stream === 'host-copy' || e.stream === 'host-copy-in');
    assert.ok(copies.every((e) => e.stream === (e.name.startsWith('swap-out') ? 'host-copy' : 'host-copy-in')), 'D2H and H2D on their own streams (full duplex)');
    assert.is(copies.filter((e) => e.name.startsWith('swap-out')).length, copies.filter((e) => e.name.startsWith('swap-in')).length);
    const s = cluster.timeline.commSummary().find((x) => x.device === 0)!;
    assert.ok(s.hostCopy > 0 && s.exposedHostCopy < s.hostCopy, `copies overlap compute (exposed ${s.exposedHostCopy} of ${s.hostCopy} s)`);
    assert.is(tf.memory().numTensors, n0, 'no tensor leaks');
    model.dispose();
  });

  test('after the forward, device activations went down by exactly the bytes host memory went up', () => {
    const model = new MoEGPT(cfg, 7);
    const after = (plan: ReturnType<typeof makePlan> | null) => {
      const cluster = new Cluster({ spec: getSpec('ascend-910b'), nodes: 1, devicesPerNode: 1 });
      const dev = cluster.device(0), ledger = new SavedLedger(dev);
      const runner = new ChunkRunner(model, 0, cfg.numLayers, true, true, dev, new MemoryExecutor(plan, ledger, dev), ledger, lay.costs);
      const ctx = { training: true, lossScale: 1, seed: 1, routerStats: [], recordStats: true };
      runner.forward(0, mbs[0], ctx, null, []);
      const snap = { hbm: dev.hbm.usedBy('activations'), host: cluster.hosts[0].usedBy('swapped') };
      const grads = new GradStore();
      runner.backward(0, null, grads, []);
      const g = gradArrays(grads); grads.dispose();
      return { ...snap, g, hbmAfter: dev.hbm.usedBy('activations'), hostAfter: cluster.hosts[0].usedBy('swapped') };
    };
    const none = after(null), swap = after(makePlan(lay.descs, undefined, { offloadModules: ['core_attn', 'moe_act', 'norm', 'residual'] }));
    assert.is(none.host, 0);
    assert.ok(swap.host > 0);
    assert.is(none.hbm - swap.hbm, swap.host, 'HBM − = host +');
    assert.is(swap.hbmAfter, 0); assert.is(swap.hostAfter, 0);
    for (const [n, want] of none.g) assertClose(swap.g.get(n)!, want, 0, `grad ${n}`);
    model.dispose();
  });

  test('minOffloadSize and offloadFraction select what is swapped', () => {
    const model = new MoEGPT(cfg, 7);
    const swapped = (p: SwapPolicy) => {
      const cluster = new Cluster({ spec: getSpec('ascend-910b'), nodes: 1, devicesPerNode: 1 });
      const res = runPipeline({ model, cluster, schedule: schedule1F1B(1, 1), partition: partitionLayers([...lay.layerFlops.values()], 1, 1),
        microBatches: mbs.slice(0, 1), costs: lay.costs, plan: makePlan(lay.descs, undefined, p) });
      res.grads.dispose();
      return { names: [...res.ledgers[0].swappedOut.keys()].map((k) => k.replace('\u0000', ':')), host: cluster.hosts[0].peakBy('swapped') };
    };
    const all = swapped(everything);
    const big = swapped({ ...everything, minOffloadSize: 2048 });
    const half = swapped({ ...everything, offloadFraction: 0.5 });
    const sizeOf = new Map(lay.descs.map((d) => [`mb0.layers.${d.layer}:${d.name}`, d.bytes]));
    assert.ok(big.names.length > 0 && big.names.length < all.names.length);
    for (const n of big.names) assert.ok(sizeOf.get(n)! >= 2048, `${n} ≥ minOffloadSize`);
    assert.ok(all.names.some((n) => n.endsWith('rstd')), 'rstd (tiny) swapped without a minimum');
    assert.ok(half.names.length > 0 && half.names.length < all.names.length && half.host < all.host);
    // the first half in forward order: layer 0 goes, the last layer stays
    assert.ok(half.names.some((n) => n.startsWith('mb0.layers.0:')) && !half.names.some((n) => n.startsWith(`mb0.layers.${cfg.numLayers - 1}:`)));
    model.dispose();
  });
}, ['wasm']);
