// Wire accounting of the placement executors on a real ParallelModel (src/parallel/placement/executor.ts,
// replica-banks.ts) and the EP-group placement spec:
//   - migration charges weights at the device element width (bf16: 2 bytes) and the fp32 AdamW moments
//     at 4 bytes per element: bytes = cross-rank moves · Σ_bank rowSize · (2 + 4 + 4), exact;
//   - the replica-gradient sum only exchanges rows among the EP ranks holding a replica:
//     Σ over replicated experts of 2·(k−1)·rowBytes (k holder ranks), i.e. far less than a group-wide
//     all-reduce of every replicated row (2·(P−1)·rows·rowBytes); and the summed values are right;
//   - epPlacementSpec reads the EP group's node layout and refuses what cannot be executed.
import { forEachBackend, assert, assertClose, tf } from './support/backends.ts';
import { resolveConfig, type ModelConfig } from '../src/model/config.ts';
import { Cluster, getSpec } from '../src/device/index.ts';
import { ParallelModel } from '../src/parallel/parallel-model.ts';
import { epPlacementSpec, migrateLayer, migrateShardedMoments } from '../src/parallel/placement/executor.ts';
import { DistributedAdamW } from '../src/parallel/dp/distributed-adamw.ts';
import { expandBanks, replicaGradBytes, sumReplicaGrads } from '../src/parallel/placement/replica-banks.ts';
import { PlacementController } from '../src/parallel/placement/controller.ts';
import { groupsLeaveNodes, layerFromSlots, PlacementError } from '../src/parallel/placement/types.ts';

const E = 8, H = 16, F = 8;
const cfgOf = (over: Partial<ModelConfig['moe']> = {}): ModelConfig => resolveConfig('tiny', {
  hiddenSize: H, numLayers: 2, numDenseLayers: 1, denseIntermediateSize: 32, numHeads: 2, numKvHeads: 2, headDim: 8, vocabSize: 32,
  mla: { qLoraRank: 8, kvLoraRank: 8, qkNopeHeadDim: 4, qkRopeHeadDim: 4, vHeadDim: 4 },
  moe: { numExperts: E, topk: 2, expertHiddenSize: F, auxLoss: [{ type: 'switch', coeff: 1e-2 }], zLossCoeff: 0, ...over },
});
const model = (layout: string, o: { nodes?: number; perNode?: number; cfg?: ModelConfig; dispatcher?: 'alltoall' | 'allgather'; dopt?: boolean } = {}) => {
  const cluster = new Cluster({ spec: getSpec('ascend-910b'), nodes: o.nodes ?? 1, devicesPerNode: o.perNode ?? 8, dtype: 'bf16' });
  return new ParallelModel(o.cfg ?? cfgOf(), cluster, { layout, seed: 3, dispatcher: o.dispatcher, distributedOptimizer: o.dopt });
};
const bankNames = (pm: ParallelModel, l: number) => [...pm.expertParams].filter((n) => n.startsWith(`layers.${l}.`)).sort();

forEachBackend('placement-wire', (test) => {
  test('migration: weights at 2 bytes (bf16), fp32 Adam moments at 4 bytes per element; rows land in their new slots', () => {
    const pm = model('dp=4,ep=4'), l = 1, names = bankNames(pm, l);
    const rowSize = (n: string) => pm.params[0].get(n).size / (E / 4);
    const moment = new Map<string, tf.Variable>();   // `${k}:${name}@${rank}` — distinct values per rank and row
    for (let r = 0; r < 4; r++) for (const n of names) for (const k of ['m', 'v']) {
      const shape = pm.params[r].get(n).shape;
      moment.set(`${k}:${n}@${r}`, tf.variable(tf.add(tf.reshape(tf.range(0, shape.reduce((a, b) => a * b, 1)), shape), (k === 'm' ? 1000 : 2000) * (r + 1))));
    }
    const full = (k: string, n: string) => tf.concat([0, 1, 2, 3].map((r) => moment.get(`${k}:${n}@${r}`)!), 0);
    const before = Object.fromEntries(names.flatMap((n) => ['p', 'm', 'v'].map((k) => [`${k}:${n}`, (k === 'p' ? tf.concat([0, 1, 2, 3].map((r) => pm.params[r].get(n)), 0) : full(k, n)).arraySync() as number[][][]])));
    const prev = [0, 1, 2, 3, 4, 5, 6, 7], next = [7, 1, 2, 3, 4, 5, 6, 0];   // swap experts 0 (rank 0) and 7 (rank 3)
    const moves = [{ slot: 0, device: 0, from: 0, to: 7, source: 7 }, { slot: 7, device: 3, from: 7, to: 0, source: 0 }];
    const rep = migrateLayer(pm, l, prev, next, moves, (r, n) => [pm.params[r].vars.get(n)!, moment.get(`m:${n}@${r}`)!, moment.get(`v:${n}@${r}`)!]);
    const perRow = names.reduce((a, n) => a + rowSize(n), 0);
    assert.is(rep.crossRank, 2);
    assert.is(rep.bytes, 2 * perRow * (2 + 4 + 4), 'bytes = 2 rows · (bf16 weight + fp32 m + fp32 v)');
    assert.is(pm.cluster.commLedger.total({ label: 'placement.migrate' }), rep.bytes);
    for (const n of names) for (const k of ['p', 'm', 'v']) {
      const after = (k === 'p' ? tf.concat([0, 1, 2, 3].map((r) => pm.params[r].get(n)), 0) : full(k, n)).arraySync() as number[][][];
      next.forEach((e, slot) => assertClose(after[slot].flat(), before[`${k}:${n}`][e].flat(), 0, `${k} ${n} slot ${slot}`));
    }
    for (const v of moment.values()) v.dispose();
    pm.dispose();
  });

  test('sharded moments (distributed optimizer, dp=8,ep=4: expert-DP 2): each element moves once, rowSize·8 bytes per cross-rank row', () => {
    const pm = model('dp=8,ep=4', { dopt: true }), l = 1, names = bankNames(pm, l), V = 32;
    const tokens = Int32Array.from({ length: 8 * 4 }, (_, i) => (i * 7 + 3) % V), targets = Int32Array.from({ length: 8 * 4 }, (_, i) => (i * 5 + 1) % V);
    const dopt = new DistributedAdamW(pm);
    pm.forwardBackward(tokens, targets, 8, 4);
    dopt.step(1e-3);
    pm.zeroGrad();
    const snap = () => names.map((n) => [0, 1, 2, 3].map((i) => (['m', 'v'] as const).map((k) => pm.groups.ep.map((g) => {
      const t = dopt.localMoment(n, g.ranks[i], k), a = t.arraySync() as number[][][]; t.dispose(); return a;
    }))));
    const before = snap();
    const prev = [0, 1, 2, 3, 4, 5, 6, 7], next = [2, 1, 0, 3, 4, 5, 6, 7];   // swap experts 0 (rank 0) and 2 (rank 1)
    const moves = [{ slot: 0, device: 0, from: 0, to: 2, source: 2 }, { slot: 2, device: 1, from: 2, to: 0, source: 0 }];
    const w = migrateLayer(pm, l, prev, next, moves, (r, n) => [pm.params[r].vars.get(n)!]);
    const m = migrateShardedMoments(pm, dopt, l, next, moves);
    const rowSize = (n: string) => pm.params[0].get(n).size / 2;
    assert.is(w.bytes, 2 * 2 * names.reduce((a, n) => a + rowSize(n) * 2, 0), 'weights: 2 rows · bf16, in each of the 2 EP groups');
    assert.is(m.bytes, 2 * names.reduce((a, n) => a + rowSize(n) * 8, 0), 'moments: 2 rows · (m + v) · 4 bytes, once');
    assert.is(pm.cluster.commLedger.total({ label: 'placement.migrate.moments' }), m.bytes);
    const after = snap(), S = 2;
    names.forEach((n, a) => next.forEach((e, slot) => [0, 1].forEach((k) => [0, 1].forEach((g) => {
      const got = after[a][Math.floor(slot / S)][k][g][slot % S], want = before[a][Math.floor(e / S)][k][g][e % S];
      assertClose(got.flat(), want.flat(), 0, `${n} ${k ? 'v' : 'm'} slot ${slot} EP group ${g}`);
    }))));
    // rows changing index too (slot 0 ← slot 1 on the same EP rank: another expert-DP slice, so another rank)
    const t2 = [1, 0, 2, 3, 4, 5, 6, 7], moves2 = [{ slot: 0, device: 0, from: 2, to: 1, source: 1 }, { slot: 1, device: 0, from: 1, to: 0, source: 2 }, { slot: 2, device: 1, from: 0, to: 2, source: 0 }];
    migrateLayer(pm, l, next, t2, moves2, (r, n) => [pm.params[r].vars.get(n)!]);
    assert.is(migrateShardedMoments(pm, dopt, l, t2, moves2).bytes, 3 * names.reduce((a, n) => a + rowSize(n) * 8, 0), 'three rows, every element to another rank');
    const after2 = snap();
    names.forEach((n, a) => t2.forEach((e, slot) => [0, 1].forEach((k) => assertClose(after2[a][Math.floor(slot / S)][k][0][slot % S].flat(), before[a][Math.floor(e / S)][k][0][e % S].flat(), 0, `${n} slot ${slot} (2nd)`))));
    assert.ok(before[0][0][0][0].flat(2).some((x) => x !== 0), 'moments are non-zero');
    const back = [{ slot: 0, device: 0, from: 2, to: 0, source: 2 }, { slot: 2, device: 1, from: 0, to: 2, source: 0 }];
    assert.throws(() => migrateLayer(pm, l, next, prev, back, (r, n) => [pm.params[r].vars.get(n)!, pm.params[r].vars.get(n)!]), /migrateShardedMoments/);
    dopt.dispose(); pm.dispose();
  });

  test('all-gather dispatcher routes through a placement with replicas: loss and every gradient equal the all-to-all dispatcher', () => {
    const V = 32, tokens = Int32Array.from({ length: 8 * 4 }, (_, i) => (i * 7 + 3) % V), targets = Int32Array.from({ length: 8 * 4 }, (_, i) => (i * 5 + 1) % V);
    const slots = [5, 1, 2, 0, 3, 5, 4, 5, 7, 0, 6, 6];   // expert 5 ×3 on 3 ranks, 0 ×2, 6 ×2 on one rank
    const run = (dispatcher: 'alltoall' | 'allgather') => {
      const pm = model('dp=4,ep=4', { dispatcher });
      expandBanks(pm, 1, slots);
      (pm.moe as { placements: Map<number, unknown> }).placements.set(1, layerFromSlots(slots, E, 4, new Array<number>(E).fill(1)));
      const r = pm.forwardBackward(tokens, targets, 8, 4);
      return { pm, loss: r.loss };
    };
    const a = run('alltoall'), g = run('allgather');
    assertClose([g.loss], [a.loss], 1e-6, 'loss');
    for (let r = 0; r < 4; r++) for (const [n, t] of a.pm.grads[r].grads) assertClose(g.pm.grads[r].get(n)!.dataSync(), t.dataSync(), 1e-5, `${n} on rank ${r}`);
    assert.ok(g.pm.cluster.commLedger.total({ label: 'ep.allgather.tokens' }) > 0, 'the all-gather dispatcher ran');
    a.pm.dispose(); g.pm.dispose();
  });

  test('replica gradients: summed among the holder ranks only; bytes = Σ 2·(k−1)·rowBytes, values = Σ over replicas', () => {
    const pm = model('dp=4,ep=4'), l = 1;
    // R = 12, S = 3 per rank: expert 0 on ranks 0,1,3 (k = 3), expert 5 on ranks 1,2 (k = 2), expert 6 twice on rank 3 (k = 1)
    const slots = [0, 1, 2, 0, 3, 5, 4, 5, 7, 0, 6, 6];
    expandBanks(pm, l, slots);
    const names = bankNames(pm, l);
    for (let r = 0; r < 4; r++) for (const n of names) {
      const shape = pm.params[r].get(n).shape;
      pm.grads[r].grads.set(n, tf.mul(tf.add(tf.reshape(tf.range(0, shape.reduce((a, b) => a * b, 1)), shape), 1), r + 1));
    }
    const grad0 = names.map((n) => tf.concat([0, 1, 2, 3].map((r) => pm.grads[r].get(n)!), 0).arraySync() as number[][][]);
    sumReplicaGrads(pm, l, slots);
    const rowBytes = (n: string) => (pm.params[0].get(n).size / 3) * 2;
    const expected = names.reduce((a, n) => a + (2 * 2 + 2 * 1) * rowBytes(n), 0);   // expert 0: 2·(3−1), expert 5: 2·(2−1)
    const charged = pm.cluster.commLedger.total({ label: 'placement.replicaGrads' });
    assertClose([charged], [expected], 1e-9, 'replica-grad bytes');
    assertClose([names.reduce((a, n) => a + replicaGradBytes(slots, 4, rowBytes(n)), 0)], [expected], 1e-9, 'replicaGradBytes formula');
    const groupWide = names.reduce((a, n) => a + 2 * 3 * 7 * rowBytes(n), 0);   // old: all-reduce of the 7 replicated rows over P = 4
    assert.ok(charged < 0.5 * groupWide, `${charged} well below the group-wide all-reduce ${groupWide}`);
    names.forEach((n, i) => {
      const after = tf.concat([0, 1, 2, 3].map((r) => pm.grads[r].get(n)!), 0).arraySync() as number[][][];
      slots.forEach((e, p) => {
        const want = slots.flatMap((x, q) => (x === e ? [grad0[i][q].flat()] : [])).reduce((a, b) => a.map((v, j) => v + b[j]));
        assertClose(after[p].flat(), want, 1e-6, `${n} slot ${p}`);
      });
    });
    pm.dispose();
  });

  test('epPlacementSpec: node layout of the EP group, router groups, hierarchical solver keeps groups in a node; refusals', () => {
    const cfg = cfgOf({ numGroups: 2, groupTopk: 1 });
    const two = model('dp=8,ep=8', { nodes: 2, perNode: 4, cfg });
    const spec = epPlacementSpec(two, { redundantSlots: 8 });
    assert.equal(spec, { numExperts: E, numReplicas: 16, numDevices: 8, numNodes: 2, numGroups: 2 });
    const ctl = new PlacementController({ spec, numLayers: 1, solver: 'eplb', period: 1, threshold: 0 });
    ctl.observe([[40, 1, 1, 1, 30, 1, 1, 1]]);
    assert.not.ok(groupsLeaveNodes(ctl.placement[0].physicalToLogical, spec), 'expert groups stay within a node');
    two.dispose();
    const one = model('dp=8,ep=4', { nodes: 2, perNode: 4 });   // each EP group sits on one node
    assert.is(epPlacementSpec(one).numNodes, 1);
    one.dispose();
    const ep1 = model('dp=1', {});
    try { epPlacementSpec(ep1); assert.unreachable('should refuse'); } catch (e) {
      assert.instance(e, PlacementError); assert.ok((e as Error).message.includes('ep >= 2'), (e as Error).message);
    }
    ep1.dispose();
  });
}, ['wasm']);
