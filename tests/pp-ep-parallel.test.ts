// Pipeline parallelism combined with EP / DP / TP (src/parallel/pp) equals single-device training:
// same parameters (same seed), same global batch, loss and EVERY gradient within 1e-5 relative (max |Δ| /
// max |ref| per tensor, as tests/parallel-ep.test.ts: float32 sums are re-associated by the split
// reductions, ~1e-7 here, while a missing or double-counted term is ≥ 1e-3). Each stage's device i holds
// the owned parameters of its chunks; the oracle is src/parallel/reference.ts. Schedules 1F1B,
// interleaved (vpp 2) and GPipe with 4–8 micro-batches; tensors do not leak across steps.
import { forEachBackend, assert, assertClose, assertNoLeak } from './support/backends.ts';
import { resolveConfig, type AuxLossType, type ModelConfig } from '../src/model/config.ts';
import { MoEGPT } from '../src/model/gpt.ts';
import { Cluster, getSpec } from '../src/device/index.ts';
import { PipelineParallelModel, type PipelineParallelOptions } from '../src/parallel/pp/pp-model.ts';
import { localShard, referenceStep } from '../src/parallel/reference.ts';

const RTOL = 1e-5, S = 8, H = 32, E = 16, V = 64;

export function ppCfg(aux: AuxLossType = 'switch', layers = 4, over: Partial<ModelConfig> = {}): ModelConfig {
  return resolveConfig('tiny', {
    hiddenSize: H, numLayers: layers, numDenseLayers: 1, denseIntermediateSize: 64, numHeads: 2, numKvHeads: 2, headDim: 16, vocabSize: V,
    mla: { qLoraRank: 16, kvLoraRank: 16, qkNopeHeadDim: 8, qkRopeHeadDim: 8, vHeadDim: 8 },
    moe: { numExperts: E, topk: 4, expertHiddenSize: 16, auxLoss: [{ type: aux, coeff: 1e-2 }], zLossCoeff: 1e-3 },
    ...over,
  });
}

function run(cfg: ModelConfig, o: Omit<PipelineParallelOptions, 'seed'>, B: number, M: number): void {
  const tokens = Int32Array.from({ length: B * S }, (_, i) => (i * 7 + 3) % V);
  const targets = Int32Array.from({ length: B * S }, (_, i) => (i * 5 + 1) % V);
  const cluster = new Cluster({ spec: getSpec('ascend-910b'), nodes: 2, devicesPerNode: 4 });
  const pp = new PipelineParallelModel(cfg, cluster, { ...o, seed: 5 });
  const label = `${o.layout} ${pp.scheduleName} vpp=${pp.vpp} M=${M}`;
  const rep = pp.forwardBackward(tokens, targets, B, S, { microBatches: M });
  const single = new MoEGPT(cfg, 5);
  const ref = referenceStep(single, pp.inner, tokens, targets, B, S, M);
  for (const [name, g] of ref.grads.grads) {
    for (const s of pp.ownerStages(name)) {
      const pm = pp.stages[s];
      for (let i = 0; i < pm.layout.world; i++) {
        const got = pm.grads[i].get(name);
        assert.ok(got, `${label}: stage ${s} rank ${i} has no gradient for ${name}`);
        assertClose(got!.dataSync(), localShard(pm, name, i, g), RTOL, `${label} ${name} stage ${s} rank ${i}`);
      }
    }
  }
  // a stage holds no gradient of a parameter it does not own
  pp.stages.forEach((pm, s) => { for (const n of pm.grads[0].grads.keys()) assert.ok(pp.ownerStages(n).has(s), `${label}: stage ${s} has a gradient of ${n}`); });
  assertClose([rep.loss], [ref.loss], RTOL, `${label} loss`);
  ref.grads.dispose(); single.dispose(); pp.dispose();
}

forEachBackend('PP × EP/DP/TP equals single device', (test) => {
  test('pp=2,ep=2 1F1B, 4 micro-batches', () => run(ppCfg(), { layout: 'pp=2,ep=2', schedule: '1f1b' }, 8, 4));
  test('pp=4,ep=2 1F1B, 8 micro-batches', () => run(ppCfg(), { layout: 'pp=4,ep=2', schedule: '1f1b' }, 16, 8));
  test('pp=2,ep=2 interleaved vpp=2, 4 micro-batches, ep-group aux', () => run(ppCfg('ep-group'), { layout: 'pp=2,ep=2', vpp: 2, schedule: 'interleaved' }, 8, 4));
  test('pp=4,ep=2 interleaved vpp=2, 8 micro-batches (8 layers)', () => run(ppCfg('switch', 8), { layout: 'pp=4,ep=2', vpp: 2, schedule: 'interleaved' }, 16, 8));
  test('pp=2,dp=2 (ep=1) GPipe, 4 micro-batches', () => run(ppCfg(), { layout: 'pp=2,dp=2', schedule: 'gpipe' }, 8, 4));
  test('pp=2,dp=2,ep=2 1F1B with tied embeddings (summed between the first and last stage)', () => run(ppCfg('switch', 4, { tieEmbeddings: true }), { layout: 'pp=2,dp=2,ep=2', schedule: '1f1b' }, 8, 4));
  test('pp=2,tp=2,ep=2 1F1B (vocab-parallel head, sequence-parallel MoE)', () => run(ppCfg(), { layout: 'pp=2,tp=2,ep=2', schedule: '1f1b' }, 8, 4));
  test('pp=2,tp=2 interleaved vpp=2 with sequence parallelism', () => run(ppCfg(), { layout: 'pp=2,tp=2', vpp: 2, schedule: 'interleaved', sequenceParallel: true }, 8, 4));

  test('numTensors stable across steps (pp=2,ep=2 interleaved)', async () => {
    const cfg = ppCfg(), cluster = new Cluster({ spec: getSpec('ascend-910b'), nodes: 1, devicesPerNode: 4 });
    const pp = new PipelineParallelModel(cfg, cluster, { layout: 'pp=2,ep=2', vpp: 2, schedule: 'interleaved', seed: 5 });
    const tokens = Int32Array.from({ length: 8 * S }, (_, i) => (i * 3 + 1) % V);
    await assertNoLeak(() => { pp.forwardBackward(tokens, tokens, 8, S, { microBatches: 4 }); pp.zeroGrad(); }, 'PipelineParallelModel step');
    pp.dispose();
  });
});
