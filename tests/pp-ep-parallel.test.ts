// Pipeline parallelism combined with EP / DP (src/parallel/pp) equals single-device training: same
// parameters (same seed), same global batch, loss and EVERY gradient within 1e-5 relative (max |Δ| /
// max |ref| per tensor, as tests/parallel-ep.test.ts: float32 sums are re-associated by the split
// reductions, ~1e-7 here, while a missing or double-counted term is ≥ 1e-3). Each stage's device i holds
// the owned parameters of its chunks (tests/support/pp.ts). Schedules 1F1B, interleaved (vpp 2) and
// GPipe with 4–8 micro-batches; a stage has no gradient of a parameter it does not own; no tensor leaks.
import * as assert from 'uvu/assert';
import { forEachBackend, assertNoLeak } from './support/backends.ts';
import { ppCfg, runPP, S, V } from './support/pp.ts';
import { Cluster, getSpec } from '../src/device/index.ts';
import { PipelineParallelModel } from '../src/parallel/pp/pp-model.ts';

forEachBackend('PP × EP/DP equals single device', (test) => {
  test('pp=2,ep=2 1F1B, 4 micro-batches', () => runPP(ppCfg(), { layout: 'pp=2,ep=2', schedule: '1f1b' }, 8, 4));
  test('pp=4,ep=2 1F1B, 8 micro-batches', () => runPP(ppCfg(), { layout: 'pp=4,ep=2', schedule: '1f1b' }, 16, 8));
  test('pp=2,ep=2 interleaved vpp=2, 4 micro-batches, ep-group aux', () => runPP(ppCfg('ep-group'), { layout: 'pp=2,ep=2', vpp: 2, schedule: 'interleaved' }, 8, 4));
  // 4 layers in pp·vpp = 8 chunks: 4 chunks are no-op padding (pass-through, sends/recvs still run)
  test('pp=4,ep=2 interleaved vpp=2, 4 layers (4 empty chunks), 8 micro-batches', () => {
    const cfg = ppCfg();
    const cluster = new Cluster({ spec: getSpec('ascend-910b'), nodes: 1, devicesPerNode: 8 });
    const part = new PipelineParallelModel(cfg, cluster, { layout: 'pp=4,ep=2', vpp: 2, schedule: 'interleaved', seed: 1 });
    assert.is(part.partition.chunks.filter((c) => c.start === c.end).length, 4);
    part.dispose();
    runPP(cfg, { layout: 'pp=4,ep=2', vpp: 2, schedule: 'interleaved' }, 16, 8);
  });
  test('pp=2,dp=2 (ep=1) GPipe, 4 micro-batches', () => runPP(ppCfg(), { layout: 'pp=2,dp=2', schedule: 'gpipe' }, 8, 4));
  test('pp=2,dp=2,ep=2 1F1B with tied embeddings (summed between the first and last stage)', () => runPP(ppCfg('switch', 4, { tieEmbeddings: true }), { layout: 'pp=2,dp=2,ep=2', schedule: '1f1b' }, 8, 4));

  test('numTensors stable across steps (pp=2,ep=2 interleaved)', async () => {
    const cfg = ppCfg(), cluster = new Cluster({ spec: getSpec('ascend-910b'), nodes: 1, devicesPerNode: 4 });
    const pp = new PipelineParallelModel(cfg, cluster, { layout: 'pp=2,ep=2', vpp: 2, schedule: 'interleaved', seed: 5 });
    const tokens = Int32Array.from({ length: 8 * S }, (_, i) => (i * 3 + 1) % V);
    await assertNoLeak(() => { pp.forwardBackward(tokens, tokens, 8, S, { microBatches: 4 }); pp.zeroGrad(); }, 'PipelineParallelModel step');
    pp.dispose();
  });
});
