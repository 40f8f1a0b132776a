// Shared by the CP tests (GQA: parallel-cp.test.ts, MLA: parallel-cp-mla.test.ts): CP shrinks the activation
// peak, a TP × CP × EP step leaks no tensor, and every activation byte is released after the backward.
import { assert, assertNoLeak } from './backends.ts';
import type { AuxLossType, ModelConfig } from '../../src/model/config.ts';
import { Cluster, getSpec } from '../../src/device/index.ts';
import { ParallelModel } from '../../src/parallel/parallel-model.ts';

export async function assertCpMemory(makeCfg: (aux: AuxLossType) => ModelConfig, tokens: Int32Array, targets: Int32Array, B: number, S: number, what: string): Promise<void> {
  const peak = (layout: string) => {
    const cluster = new Cluster({ spec: getSpec('ascend-910b'), nodes: 1 });
    const pm = new ParallelModel(makeCfg('switch'), cluster, { layout, seed: 5 });
    pm.forwardBackward(tokens, targets, B, S);
    const p = cluster.device(0).hbm.peakBy('activations');
    pm.dispose();
    return p;
  };
  const p1 = peak('dp=1'), p2 = peak('cp=2');
  assert.ok(p2 < 0.6 * p1, `${what}: activation peak with cp=2 ${p2} vs cp=1 ${p1}`);
  const cluster = new Cluster({ spec: getSpec('ascend-910b'), nodes: 1 });
  const pm = new ParallelModel(makeCfg('global'), cluster, { layout: 'tp=2,cp=2,ep=4', seed: 5 });
  await assertNoLeak(() => { pm.forwardBackward(tokens, targets, B, S); pm.zeroGrad(); }, `${what}: tp=2,cp=2,ep=4 step`);
  for (let r = 0; r < 4; r++) assert.is(cluster.device(r).hbm.usedBy('activations'), 0);
  pm.dispose();
}
