// The trainer through the pipeline / recompute / swap executors (src/train/pipeline.ts over
// src/parallel/exec's runTrainStep): pp=2 (1F1B, GPipe) and pp=2 vpp=2 interleaved give the
// single-device trainer's loss sequence; --recompute full and --swap give the same losses as a plain
// executor run; invalid combinations are refused with one problem line each, before any work.
import { forEachBackend, assert, assertClose } from './support/backends.ts';
import { resolveConfig, type ModelConfig } from '../src/model/config.ts';
import { Trainer, defaultTrainConfig, type TrainConfig } from '../src/train/trainer.ts';
import { loadDataset } from '../src/train/data.ts';
import { createModel } from '../src/train/model.ts';
import { PipelineEngine } from '../src/train/pipeline.ts';
import { parsePipelineFlags, wantsPipeline, type RawPipelineFlags } from '../src/train/pipeline-flags.ts';
import { parseTrainArgs } from '../src/cli/commands/train.ts';

const ds = loadDataset('text', 'byte', 1);
const cfg: ModelConfig = resolveConfig('tiny', {
  hiddenSize: 32, numLayers: 4, numDenseLayers: 1, denseIntermediateSize: 64, numHeads: 2, numKvHeads: 2, headDim: 16,
  mla: { qLoraRank: 16, kvLoraRank: 16, qkNopeHeadDim: 16, qkRopeHeadDim: 8, vHeadDim: 16 },
  moe: { numExperts: 8, topk: 2, expertHiddenSize: 16, numGroups: 1, groupTopk: 1, auxLoss: [{ type: 'global', coeff: 1e-2 }] },
});
const tc = (o: Partial<TrainConfig> = {}) => defaultTrainConfig({ batch: 2, seqLen: 16, steps: 3, microBatches: 4, warmupSteps: 1, lr: 3e-3, minLr: 3e-4, gradClip: 0.5, ...o });

function single(t: TrainConfig, steps: number): number[] {
  const m = createModel(cfg, t.seed), tr = new Trainer(m, ds, t, 1, 1, cfg.moe.topk);
  const out = Array.from({ length: steps }, () => tr.trainStep().loss);
  tr.dispose(); m.dispose();
  return out;
}

async function piped(t: TrainConfig, parallel: string | undefined, raw: RawPipelineFlags, steps: number) {
  const { flags, problems } = parsePipelineFlags(parallel, raw, {}, {}, cfg, t.microBatches);
  assert.equal(problems, []);
  const m = createModel(cfg, t.seed), e = new PipelineEngine(flags!), tr = new Trainer(m, ds, t, 1, 1, cfg.moe.topk, null, false, e);
  const losses: number[] = [];
  for (let s = 0; s < steps; s++) losses.push((await tr.trainStepAsync()).loss);
  const summary = e.summary({ gantt: null, trace: null });
  tr.dispose(); m.dispose();
  return { losses, summary };
}

const problemsOf = (argv: string[]) => parseTrainArgs(argv, false).problems;

forEachBackend('train pipeline', (test) => {
  test('pp=2 1f1b, pp=2 gpipe, pp=2 vpp=2 interleaved through the trainer == single-device trainer, 3 steps, 1e-5', async () => {
    const t = tc(), ref = single(t, 3);
    for (const [parallel, raw] of [['pp=2', {}], ['pp=2', { schedule: 'gpipe' }], ['pp=2', { vpp: '2' }]] as [string, RawPipelineFlags][]) {
      const { losses, summary } = await piped(t, parallel, raw, 3);
      assertClose(losses, ref, 1e-5, `${parallel} ${JSON.stringify(raw)} losses`);
      assert.is(summary.perDevicePeakByCategory.length, 2);
      assert.ok(summary.perDevicePeakByCategory.every((c) => c.weights > 0 && c.optimizer === 2 * c.weights && c.activations > 0 && c.total > 0), JSON.stringify(summary.perDevicePeakByCategory));
      assert.ok(summary.bubbleFraction > 0 && summary.bubbleFraction < 1, `bubble ${summary.bubbleFraction}`);
      assert.ok(summary.simulatedStepSeconds > 0);
      assert.equal(summary.stageLayers.flat(2).sort(), [0, 1, 2, 3]);
    }
  });

  test('--recompute full, selective, --swap (pp=1 and pp=2) give the plain run\'s losses; swap charges host memory', async () => {
    const t = tc({ steps: 2, microBatches: 2 });
    const plain = await piped(t, undefined, { recompute: 'none' }, 2);
    assertClose(plain.losses, single(t, 2), 1e-5, 'pp=1 executor vs trainer');
    for (const [parallel, raw] of [[undefined, { recompute: 'full' }], [undefined, { recompute: 'full', recomputeNumLayers: '2' }], [undefined, { recompute: 'core_attn,moe_act,norm' }], [undefined, { swap: 'core_attn' }], ['pp=2', { recompute: 'full' }], ['pp=2', { recompute: 'core_attn', swap: 'moe_act' }]] as [string | undefined, RawPipelineFlags][]) {
      const r = await piped(t, parallel, raw, 2);
      assertClose(r.losses, plain.losses, 1e-6, `${parallel} ${JSON.stringify(raw)}`);
      if (raw.swap) assert.ok(r.summary.hostSwappedPeakBytes[0] > 0, `host swapped bytes ${JSON.stringify(r.summary.hostSwappedPeakBytes)} ${JSON.stringify(r.summary.plan)}`);
      if (raw.recompute === 'full' && !parallel) assert.ok(r.summary.peakActivationBytes[0] < plain.summary.peakActivationBytes[0], 'full recompute lowers the saved peak');
    }
  });

  test('--memory-budget: the planner decides, the losses are unchanged, the explanation is reported', async () => {
    const t = tc({ steps: 1, microBatches: 2 });
    const base = await piped(t, undefined, { recompute: 'none' }, 1);
    const r = await piped(t, undefined, { memoryBudget: String(Math.round(base.summary.peakActivationBytes[0] * 0.5)) }, 1);
    assertClose(r.losses, base.losses, 1e-6, 'budget');
    assert.is(r.summary.planner.length, 1);
    assert.ok(r.summary.planner[0].classes.length > 0 && r.summary.plan !== null);
  });

  test('invalid combinations are refused, one problem line each, with what is supported', () => {
    assert.ok(wantsPipeline('pp=2', {}) && wantsPipeline(undefined, { recompute: 'full' }) && !wantsPipeline('ep=4', {}));
    // pp × tp/dp/ep runs (src/parallel/pp): memory plans, allgather overlap, the distributed optimizer and cp are refused
    const p = problemsOf(['--parallel', 'pp=2,ep=2,tp=2', '--overlap', 'on', '--dispatcher', 'allgather', '--recompute', 'permute', '--distributed-optimizer', '--override', JSON.stringify({ numLayers: 4 })]);
    const has = (s: string) => assert.ok(p.some((x) => x.includes(s)), `'${s}' in:\n${p.join('\n')}`);
    has('--overlap on needs --dispatcher alltoall or hierarchical'); has('--recompute permute is not executed with tp/dp/ep inside the pipeline stages'); has('--distributed-optimizer applies to');
    assert.ok(p.every((x) => !x.includes('\n')), 'one line each');
    assert.ok(problemsOf(['--parallel', 'pp=2', '--overlap', 'on']).some((x) => x.includes('--overlap on needs --parallel pp>1 with ep>1')));
    assert.ok(problemsOf(['--parallel', 'pp=2,ep=2,cp=2', '--override', JSON.stringify({ attention: 'gqa' })]).some((x) => x.includes('cp=2 with pp > 1 is not supported')));
    assert.ok(problemsOf(['--parallel', 'ep=2', '--recompute', 'full']).some((x) => x.includes('ep=2 without pp > 1 cannot be combined with --recompute')));
    assert.equal(problemsOf(['--parallel', 'pp=2,ep=2', '--overlap', 'on', '--micro-batches', '4']), []);
    const q = problemsOf(['--parallel', 'pp=4', '--vpp', '2', '--schedule', '1f1b', '--recompute', 'full,bogus', '--swap', 'nope', '--memory-budget', 'x', '--offload-fraction', '2', '--recompute-num-layers', '0']);
    const hasQ = (s: string) => assert.ok(q.some((x) => x.includes(s)), `'${s}' in:\n${q.join('\n')}`);
    hasQ('--schedule 1f1b needs --vpp 1'); hasQ("unknown: 'bogus'"); hasQ("'full' stands alone"); hasQ("unknown: 'nope'"); hasQ('--memory-budget must be a size'); hasQ('--offload-fraction must be in (0, 1]'); hasQ('--recompute-num-layers needs --recompute full'); hasQ('--recompute-num-layers must be an integer');
    // tiny: 4 layers < 8 chunks runs, padded with no-op chunks (partition.ts)
    assert.equal(problemsOf(['--parallel', 'pp=4', '--vpp', '2']), []);
    assert.equal(problemsOf(['--parallel', 'pp=4,ep=2', '--vpp', '2', '--micro-batches', '8', '--schedule', 'interleaved', '--overlap', 'on']), []);
    // full recompute, selective recompute of local classes, swap and a memory budget run inside pp × ep stages (parallel/pp/stage-memory.ts, stage-budget.ts); permute/router do not
    assert.equal(problemsOf(['--parallel', 'pp=4,ep=2', '--vpp', '2', '--micro-batches', '8', '--schedule', 'interleaved', '--overlap', 'on', '--recompute', 'norm,mla_up_proj,core_attn,moe_act', '--swap', 'expert_fc1,permute']), []);
    const r = problemsOf(['--parallel', 'pp=2,ep=2', '--recompute', 'permute,router,moe_act']);
    for (const s of ['--recompute permute is not executed', '--recompute router is not executed']) assert.ok(r.some((x) => x.includes(s)), `'${s}' in:\n${r.join('\n')}`);
    assert.equal(problemsOf(['--parallel', 'pp=2,ep=2', '--memory-budget', '24MiB']), []);
    assert.equal(problemsOf(['--parallel', 'pp=2', '--micro-batches', '4', '--recompute', 'core_attn,moe_act', '--device-memory', '64MiB']), []);
    assert.equal(problemsOf(['--memory-budget', '24MiB']), []);
    assert.ok(problemsOf(['--parallel', 'ep=4', '--overlap', 'on']).some((x) => x.includes('--overlap on needs --parallel pp>1 with ep>1')));
    assert.ok(problemsOf(['--recompute', 'full', '--override', JSON.stringify({ moe: { inputJitterEps: 0.01 } })]).some((x) => x.includes('inputJitterEps')));
  });
}, ['wasm']);
