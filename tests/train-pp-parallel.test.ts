// The trainer through pp × ep/dp/tp (src/train/pp-parallel.ts over src/parallel/pp): the host model's
// weights after 3 AdamW steps equal the single-device trainer's, with overlap on and off, and the
// summary reports per-device memory by category, the bubble and the EP hidden fraction. Aux-loss
// coefficient 0 here: with dp > 1 the per-micro-batch token sets of the aux statistics differ from the
// single device's by definition (tests/pp-ep-parallel.test.ts covers aux losses against the oracle);
// the z-loss and the expert-bias update (counts over the whole global batch) are exercised.
// Tolerance: losses 1e-5 relative; weights 1e-4 of each tensor's max |w| (AdamW's first steps turn
// float32 re-association noise in near-zero gradients into updates of up to lr·|noise|/(|noise|+eps)).
import { forEachBackend, assert, assertClose, assertNoLeak } from './support/backends.ts';
import { resolveConfig, type ModelConfig } from '../src/model/config.ts';
import { Trainer, defaultTrainConfig, type TrainConfig } from '../src/train/trainer.ts';
import { loadDataset } from '../src/train/data.ts';
import { createModel } from '../src/train/model.ts';
import type { MoEGPT } from '../src/model/gpt.ts';
import { PipelineEngine } from '../src/train/pipeline.ts';
import { parsePipelineFlags, type RawPipelineFlags } from '../src/train/pipeline-flags.ts';

const ds = loadDataset('text', 'byte', 1);
const cfg: ModelConfig = resolveConfig('tiny', {
  hiddenSize: 32, numLayers: 4, numDenseLayers: 1, denseIntermediateSize: 64, numHeads: 2, numKvHeads: 2, headDim: 16,
  mla: { qLoraRank: 16, kvLoraRank: 16, qkNopeHeadDim: 16, qkRopeHeadDim: 8, vHeadDim: 16 },
  moe: { numExperts: 8, topk: 2, expertHiddenSize: 16, numGroups: 1, groupTopk: 1, auxLoss: [{ type: 'switch', coeff: 0 }] },
});
const t: TrainConfig = defaultTrainConfig({ batch: 2, seqLen: 16, steps: 3, microBatches: 4, warmupSteps: 1, lr: 3e-3, minLr: 3e-4, gradClip: 0.5 });

function single() {
  const m = createModel(cfg, t.seed) as MoEGPT, tr = new Trainer(m, ds, t, 1, 1, cfg.moe.topk);
  const losses = Array.from({ length: 3 }, () => tr.trainStep().loss);
  return { losses, m, done: () => { tr.dispose(); m.dispose(); } };
}

async function piped(parallel: string, raw: RawPipelineFlags, extra: { sequenceParallel?: boolean } = {}) {
  const { flags, problems } = parsePipelineFlags(parallel, raw, {}, extra, cfg, t.microBatches);
  assert.equal(problems, []);
  const m = createModel(cfg, t.seed) as MoEGPT, e = new PipelineEngine(flags!), tr = new Trainer(m, ds, t, 1, 1, cfg.moe.topk, null, false, e);
  const losses: number[] = [];
  for (let s = 0; s < 3; s++) losses.push((await tr.trainStepAsync()).loss);
  return { losses, m, e, summary: e.summary({ gantt: null, trace: null }), done: () => { tr.dispose(); e.dispose(); m.dispose(); } };
}

forEachBackend('train pp × ep/dp/tp', (test) => {
  test('pp=2,ep=2 (1f1b, overlap off and on), pp=2,dp=2 interleaved, pp=2,tp=2 SP: losses and weights after 3 AdamW steps == single device', async () => {
    const ref = single();
    for (const [parallel, raw, extra] of [['pp=2,ep=2', { schedule: '1f1b', overlap: 'off' }, {}], ['pp=2,ep=2', { schedule: '1f1b', overlap: 'on' }, {}],
      ['pp=2,dp=2', { vpp: '2' }, {}], ['pp=2,tp=2', {}, { sequenceParallel: true }]] as [string, RawPipelineFlags, { sequenceParallel?: boolean }][]) {
      const what = `${parallel} ${JSON.stringify(raw)}`, r = await piped(parallel, raw, extra);
      assertClose(r.losses, ref.losses, 1e-5, `${what} losses`);
      for (const [name, v] of ref.m.params.vars) assertClose(r.m.params.get(name).dataSync(), v.dataSync(), 1e-4, `${what} weight ${name}`);
      const s = r.summary, st = s.stages!;
      assert.ok(st, 'stages summary');
      assert.is(s.perDevicePeakByCategory.length, st.world);
      assert.ok(s.perDevicePeakByCategory.every((c) => c.weights > 0 && c.optimizer === 2 * c.weights && c.activations > 0), JSON.stringify(s.perDevicePeakByCategory));
      assert.ok(s.bubbleFraction > 0 && s.simulatedStepSeconds > 0);
      if (raw.overlap === 'on') { assert.ok(st.epCommHiddenFraction > 0.2, `hidden ${st.epCommHiddenFraction}`); assert.is(st.otherMode!.epCommHiddenFraction, 0); }
      if (raw.overlap === 'off' && parallel.includes('ep')) { assert.is(st.epCommHiddenFraction, 0); assert.ok(st.otherMode!.epCommHiddenFraction > 0.2); }
      r.done();
    }
    ref.done();
  });

  test('pp=4,ep=2 interleaved vpp=2 on 4 layers (4 no-op chunks), overlap on, --overlap-compare off: == single device, no comparison run', async () => {
    const ref = single(), raw: RawPipelineFlags = { vpp: '2', schedule: 'interleaved', overlap: 'on', overlapCompare: 'off' };
    const r = await piped('pp=4,ep=2', raw);
    assert.is(r.e.runner!.model.partition.chunks.filter((c) => c.start === c.end).length, 4);
    assertClose(r.losses, ref.losses, 1e-5, 'pp=4,ep=2 vpp=2 losses');
    for (const [name, v] of ref.m.params.vars) assertClose(r.m.params.get(name).dataSync(), v.dataSync(), 1e-4, `pp=4,ep=2 vpp=2 weight ${name}`);
    assert.is(r.summary.stages!.otherMode, null);
    assert.ok(parsePipelineFlags('pp=4,ep=2', { ...raw, overlapCompare: 'maybe' }, {}, {}, cfg, t.microBatches).problems.some((x) => x.includes('--overlap-compare must be on or off')));
    r.done(); ref.done();
  });

  test('numTensors stable across trainer steps (pp=2,ep=2 overlap on)', async () => {
    const { flags } = parsePipelineFlags('pp=2,ep=2', { overlap: 'on' }, {}, {}, cfg, t.microBatches);
    const m = createModel(cfg, t.seed) as MoEGPT, e = new PipelineEngine(flags!), tr = new Trainer(m, ds, { ...t, evalEvery: 0 }, 1, 1, cfg.moe.topk, null, false, e);
    await assertNoLeak(async () => { await tr.trainStepAsync(); }, 'pp × ep trainer step');
    tr.dispose(); e.dispose(); m.dispose();
  });
}, ['wasm']);
