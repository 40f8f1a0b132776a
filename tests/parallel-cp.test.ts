// Context parallelism: every sequence is cut into 2·CP chunks and CP rank r holds chunks r and
// 2·CP−1−r (load balance under the causal mask); attention gathers K/V around the CP ring and returns
// dK/dV the same way. Loss and every gradient equal single-device training within 1e-5 relative
// (float32 reassociation, see parallel-ep.test.ts; measured ≤ 9e-7), also folded with TP, EP and DP.
// Bytes: per attention layer and micro-batch each rank receives the K and V blocks of the cp−1 other
// ranks forward and sends its dK/dV partials for them backward: ring attention's (c−1) steps of
// 2·(s/c)·b·n_kv·d_head·4 bytes each way (perf-model §2.6).
import { forEachBackend, assert, assertClose } from './support/backends.ts';
import { resolveConfig, type AuxLossType, type ModelConfig } from '../src/model/config.ts';
import { MoEGPT } from '../src/model/gpt.ts';
import { Cluster, getSpec } from '../src/device/index.ts';
import { ParallelModel } from '../src/parallel/parallel-model.ts';
import { assertCpMemory } from './support/cp.ts';
import { localShard, referenceStep } from '../src/parallel/reference.ts';
import { cpPositions, cpShard, positionMask } from '../src/parallel/cp/chunking.ts';

const RTOL = 1e-5, B = 8, S = 8, H = 32, V = 64, D = 8, KV = 2;

function makeCfg(aux: AuxLossType): ModelConfig {
  return resolveConfig('tiny', {
    hiddenSize: H, numLayers: 2, numDenseLayers: 1, denseIntermediateSize: 64, numHeads: 4, numKvHeads: KV, headDim: D, vocabSize: V, attention: 'gqa',
    moe: { numExperts: 16, topk: 4, expertHiddenSize: 16, auxLoss: [{ type: aux, coeff: 1e-2 }], zLossCoeff: 1e-3 },
  });
}
const tokens = Int32Array.from({ length: B * S }, (_, i) => (i * 7 + 3) % V);
const targets = Int32Array.from({ length: B * S }, (_, i) => (i * 5 + 1) % V);

forEachBackend('parallel CP chunking', (test) => {
  test('rank r holds chunks r and 2·CP−1−r; masks by global position', () => {
    assert.equal(Array.from(cpPositions(8, 2, 0)), [0, 1, 6, 7]);
    assert.equal(Array.from(cpPositions(8, 2, 1)), [2, 3, 4, 5]);
    assert.equal(Array.from(cpShard([10, 11, 12, 13, 14, 15, 16, 17, 20, 21, 22, 23, 24, 25, 26, 27], 2, 8, 2, 1)), [12, 13, 14, 15, 22, 23, 24, 25]);
    assert.equal(Array.from(positionMask([1, 6], [0, 2, 7])), [0, -1e9, -1e9, 0, 0, -1e9]);
    assert.throws(() => cpPositions(6, 2, 0), /not divisible by 2·cp/);
  });
}, ['cpu']);

forEachBackend('parallel CP equals single device', (test) => {
  for (const [layout, aux, M] of [['cp=2', 'switch', 1], ['cp=2,ep=4,dp=2', 'ep-group', 1], ['tp=2,cp=2,ep=4', 'global', 2], ['cp=4,ep=4,dp=2', 'switch', 1]] as const) {
    test(`${layout} (${aux} aux, ${M} micro-batches): loss and every gradient`, () => {
      const cfg = makeCfg(aux);
      const cluster = new Cluster({ spec: getSpec('ascend-910b'), nodes: 1 });
      const pm = new ParallelModel(cfg, cluster, { layout, seed: 5 });
      const rep = pm.forwardBackward(tokens, targets, B, S, { microBatches: M });
      const single = new MoEGPT(cfg, 5), ref = referenceStep(single, pm.layout, tokens, targets, B, S, M);
      assertClose([rep.loss], [ref.loss], RTOL, `${layout} loss`);
      for (const [name, g] of ref.grads.grads)
        for (let r = 0; r < pm.layout.world; r++) assertClose(pm.grads[r].get(name)!.dataSync(), localShard(pm, name, r, g), RTOL, `${layout} ${name} on rank ${r}`);
      if (layout === 'cp=2') {
        const c = 2, b = B, kvBlock = 2 * (S / c) * b * KV * D * 4;          // K and V of one rank's chunks
        const bytes = (label: string) => cluster.commLedger.total({ label });
        assert.is(bytes('cp.kv'), 2 /* layers */ * c * (c - 1) * kvBlock);
        assert.is(bytes('cp.dkv'), 2 * c * (c - 1) * kvBlock);
      }
      ref.grads.dispose(); single.dispose(); pm.dispose();
    });
  }

  test('no tensor leaks with TP, CP and EP folded; activations released; CP halves the activation peak', async () => {
    await assertCpMemory(makeCfg, tokens, targets, B, S, 'GQA');
  });
}, ['wasm']);
