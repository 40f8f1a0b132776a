// Replicas draw their seeded initial weights once (model/init.ts InitMemo) instead of once per
// device: the memoised draws equal the plain ones bit for bit, and every replica of ParallelModel and
// of every pipeline stage starts from exactly the single-device model's weights (its EP slice / TP
// shard). Memo and replicas release every tensor they hold.
import * as assert from 'uvu/assert';
import { forEachBackend } from './support/backends.ts';
import { ppCfg } from './support/pp.ts';
import { tf } from '../src/backend/tf.ts';
import { Cluster, getSpec } from '../src/device/index.ts';
import { MoEGPT } from '../src/model/gpt.ts';
import { InitMemo } from '../src/model/init.ts';
import type { ModelConfig } from '../src/model/config.ts';
import { ParallelModel } from '../src/parallel/parallel-model.ts';
import { PipelineParallelModel } from '../src/parallel/pp/pp-model.ts';
import { localShard } from '../src/parallel/reference.ts';

/** Every parameter of every rank of `stages` equals (bitwise) its shard of the single-device model. */
function assertSameAsSingle(cfg: ModelConfig, seed: number, stages: ParallelModel[]): void {
  const ref = new MoEGPT(cfg, seed);
  let checked = 0;
  for (const pm of stages) pm.params.forEach((ps, r) => {
    for (const [name, v] of ps.vars) {
      const want = localShard(pm, name, r, ref.params.get(name)), got = v.dataSync();
      assert.is(got.length, want.length, `${name} rank ${r}: size`);
      for (let i = 0; i < want.length; i++) if (!Object.is(got[i], want[i])) assert.unreachable(`${name} rank ${r} [${i}]: ${got[i]} != ${want[i]}`);
      checked++;
    }
  });
  assert.ok(checked > 0);
  ref.params.dispose();
}

forEachBackend('replicas share one seeded initialisation', (test) => {
  test('InitMemo draws equal plain draws; shared draws are released on dispose', () => {
    const cfg = ppCfg(), before = tf.memory().numTensors;
    const memo = new InitMemo(), a = new MoEGPT(cfg, 3, { initMemo: memo }), b = new MoEGPT(cfg, 3, { initMemo: memo });
    memo.dispose();
    const plain = new MoEGPT(cfg, 3);
    for (const [name, v] of plain.params.vars) {
      const want = v.dataSync();
      for (const m of [a, b]) assert.equal(Array.from(m.params.get(name).dataSync()), Array.from(want), name);
    }
    for (const m of [a, b, plain]) m.params.dispose();
    assert.is(tf.memory().numTensors, before, 'no tensor left');
  });

  test('ParallelModel ep=2,dp=2 and tp=2,ep=2: every rank starts from the single-device weights', () => {
    const cfg = ppCfg();
    for (const layout of ['ep=2,dp=2', 'tp=2,ep=2']) {
      const pm = new ParallelModel(cfg, new Cluster({ spec: getSpec('ascend-910b'), nodes: 1, devicesPerNode: 4 }), { layout, seed: 7 });
      assertSameAsSingle(cfg, 7, [pm]);
      pm.dispose();
    }
  });

  test('PipelineParallelModel pp=2,ep=2 (one memo for all stages, and one shared with a second model)', () => {
    const cfg = ppCfg(), before = tf.memory().numTensors, memo = new InitMemo();
    const build = () => new PipelineParallelModel(cfg, new Cluster({ spec: getSpec('ascend-910b'), nodes: 1, devicesPerNode: 4 }), { layout: 'pp=2,ep=2', vpp: 2, schedule: 'interleaved', seed: 5, initMemo: memo });
    const x = build(), y = build();
    memo.dispose();
    assertSameAsSingle(cfg, 5, x.stages);
    assertSameAsSingle(cfg, 5, y.stages);
    x.dispose(); y.dispose();
    assert.is(tf.memory().numTensors, before, 'no tensor left');
  });
});
