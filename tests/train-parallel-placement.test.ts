// Dynamic expert placement in the trainer (src/train/parallel.ts) with the all-gather dispatcher and
// with the distributed optimizer (weights migrated by migrateLayer, sharded AdamW moments by
// migrateShardedMoments): the loss sequence equals the single-device trainer's within 1e-5, and the
// gathered weights and moments (checkpoint content) equal the single-device ones (5e-5, see
// train-parallel.test.ts). The placement spec comes from the EP group (epPlacementSpec).
import { forEachBackend, assert, assertClose } from './support/backends.ts';
import { runParallel } from './support/parallel-trainer.ts';
import { resolveConfig, type ModelConfig } from '../src/model/config.ts';
import { Trainer, defaultTrainConfig, type TrainConfig } from '../src/train/trainer.ts';
import { loadDataset } from '../src/train/data.ts';
import { createModel } from '../src/train/model.ts';
import type { MoEGPT } from '../src/model/gpt.ts';
import { ParallelEngine } from '../src/train/parallel.ts';
import { parseParallelFlags } from '../src/train/parallel-flags.ts';
import { getSpec } from '../src/device/index.ts';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ds = loadDataset('text', 'byte', 1);
const cfgOf = (groups = 1): ModelConfig => resolveConfig('tiny', {
  hiddenSize: 32, numLayers: 3, numDenseLayers: 1, denseIntermediateSize: 64, numHeads: 2, numKvHeads: 2, headDim: 16,
  mla: { qLoraRank: 16, kvLoraRank: 16, qkNopeHeadDim: 16, qkRopeHeadDim: 8, vHeadDim: 16 },
  moe: { numExperts: 8, topk: 2, expertHiddenSize: 16, numGroups: groups, groupTopk: 1, auxLoss: [{ type: 'global', coeff: 1e-2 }] },
});
const tc = (o: Partial<TrainConfig> = {}) => defaultTrainConfig({ batch: 4, seqLen: 16, steps: 5, warmupSteps: 1, lr: 3e-3, minLr: 3e-4, gradClip: 0.5, ...o });
const perm = [5, 2, 7, 0, 3, 6, 1, 4];   // every slot changes; most moves cross ranks

function singleRun(cfg: ModelConfig, t: TrainConfig, steps: number) {
  const m = createModel(cfg, t.seed), tr = new Trainer(m, ds, t, 1, 1, cfg.moe.topk);
  const losses = Array.from({ length: steps }, () => tr.trainStep().loss);
  return { losses, m, tr, done: () => { tr.dispose(); m.dispose(); } };
}

const parallel = (cfg: ModelConfig, t: TrainConfig, raw: Parameters<typeof parseParallelFlags>[0], steps: number, each?: (e: ParallelEngine, step: number) => void) =>
  runParallel(ds, cfg, t, raw, steps, each);

forEachBackend('train parallel placement', (test) => {
  test('flags: placement with the all-gather dispatcher and the distributed optimizer is accepted; redundant slots with it are not', () => {
    const cfg = cfgOf();
    assert.equal(parseParallelFlags({ parallel: 'ep=4', dispatcher: 'allgather', placement: 'dynamic' }, cfg, 4, 16, 1).problems, []);
    assert.equal(parseParallelFlags({ parallel: 'ep=2,dp=4', distributedOptimizer: true, placement: 'dynamic' }, cfg, 4, 16, 1).problems, []);
    const { problems } = parseParallelFlags({ parallel: 'ep=4', distributedOptimizer: true, placement: 'dynamic', placementSolver: 'eplb', redundantSlots: '4' }, cfg, 4, 16, 1);
    assert.is(problems.length, 1);
    assert.match(problems[0], /--redundant-slots > 0 is not supported with --distributed-optimizer/);
  });

  test('all-gather dispatcher: forced re-placements, the controller and redundant slots keep the loss sequence (1e-5)', () => {
    const cfg = cfgOf(), t = tc();
    const ref = singleRun(cfg, t, 5);
    const forced = parallel(cfg, t, { parallel: 'ep=4', dispatcher: 'allgather', placement: 'dynamic', placementPeriod: '1000' }, 5, (e, s) => {
      if (s === 2) assert.ok(e.forcePlacement(0, perm, s).crossRank > 0, 'moves cross ranks');
      if (s === 3) e.forcePlacement(1, [...perm].reverse(), s);
    });
    assertClose(forced.losses, ref.losses, 1e-5, 'all-gather, forced');
    assert.is(forced.e.placement!.migrations.length, 2);
    forced.done();
    const ctl = parallel(cfg, t, { parallel: 'ep=4', dispatcher: 'allgather', placement: 'dynamic', placementPeriod: '2', placementThreshold: '0' }, 5);
    assertClose(ctl.losses, ref.losses, 1e-5, 'all-gather, controller');
    assert.ok(ctl.e.placement!.migrations.length > 0, 'the controller re-placed a layer');
    ctl.done();
    const rep = parallel(cfg, t, { parallel: 'ep=4', dispatcher: 'allgather', placement: 'dynamic', placementSolver: 'eplb', redundantSlots: '4', placementPeriod: '1000' }, 5, (e, s) => {
      if (s === 2) e.forcePlacement(0, [5, 5, 2, 7, 0, 3, 6, 1, 4, 5, 2, 7], s);   // expert 5 ×3, 2 and 7 ×2, across ranks
    });
    assertClose(rep.losses, ref.losses, 1e-5, 'all-gather, redundant slots');
    rep.done(); ref.done();
  });

  test('distributed optimizer (ep=2,dp=4): forced re-placements migrate weights and sharded moments; losses, weights and moments == single device', () => {
    const cfg = cfgOf(), t = tc();
    const ref = singleRun(cfg, t, 5);
    const p = parallel(cfg, t, { parallel: 'ep=2,dp=4', distributedOptimizer: true, placement: 'dynamic', placementPeriod: '1000' }, 5, (e, s) => {
      if (s === 2) { const r = e.forcePlacement(0, perm, s); assert.ok(r.crossRank > 0 && r.bytes > 0, 'migration charged'); }
      if (s === 3) e.forcePlacement(1, [...perm].reverse(), s);
    });
    assertClose(p.losses, ref.losses, 1e-5, 'distributed optimizer, forced');
    assert.ok(p.e.cluster.commLedger.total({ label: 'placement.migrate.moments' }) > 0, 'sharded moments moved');
    p.tr.syncForCheckpoint();
    for (const [name, v] of ref.m.params.vars) {
      assertClose(p.host.params.get(name).dataSync(), v.dataSync(), 5e-5, `weights ${name}`);
      for (const k of ['m', 'v'] as const) assertClose(p.tr.opt[k].get(name)!.dataSync(), ref.tr.opt[k].get(name)!.dataSync(), 5e-5, `${k}.${name}`);
    }
    p.done();
    const ctl = parallel(cfg, t, { parallel: 'ep=2,dp=4', distributedOptimizer: true, placement: 'dynamic', placementPeriod: '2', placementThreshold: '0' }, 5);
    assertClose(ctl.losses, ref.losses, 1e-5, 'distributed optimizer, controller');
    assert.ok(ctl.e.placement!.migrations.length > 0, 'the controller re-placed a layer');
    ctl.done(); ref.done();
  });

  test('placement spec from the EP group: 2 nodes × 2 devices, 2 router groups, eplb with 4 redundant slots keeps each group within a node; losses == single device', () => {
    const cfg = cfgOf(2), t = tc();
    const dir = mkdtempSync(join(tmpdir(), 'ultramoe-spec-')), device = join(dir, 'two-per-node.json');
    writeFileSync(device, JSON.stringify({ ...getSpec('ascend-910b'), name: 'two-per-node', devicesPerNode: 2 }));
    const ref = singleRun(cfg, t, 5);
    const p = parallel(cfg, t, { parallel: 'ep=4', device, placement: 'dynamic', placementSolver: 'eplb', redundantSlots: '4', placementPeriod: '2', placementThreshold: '0' }, 5);
    const spec = p.e.placement!.controller.spec;
    assert.equal(spec, { numExperts: 8, numReplicas: 12, numDevices: 4, numNodes: 2, numGroups: 2 });
    assertClose(p.losses, ref.losses, 1e-5, 'hierarchical placement');
    assert.ok(p.e.placement!.migrations.length > 0, 'the controller re-placed a layer');
    for (const l of p.e.moeBlocks) {
      const slots = p.e.pm.moe.placements.get(l)!.physicalToLogical, perDev = slots.length / 4;
      for (const g of [0, 1]) {
        const nodes = new Set(slots.flatMap((e, s) => (Math.floor(e / 4) === g ? [Math.floor(s / perDev / 2)] : [])));
        assert.is(nodes.size, 1, `layer ${l}: router group ${g} on nodes ${[...nodes]} (${slots})`);
      }
    }
    p.done(); ref.done(); rmSync(dir, { recursive: true });
  });
}, ['wasm']);
