// Full recomputation inside pipeline stages that run EP / TP / DP (src/parallel/pp/stage-full-recompute.ts):
// the stage's devices keep only each layer group's input and replay the group's forward in lockstep before
// its backward, collectives included.
//   - numbers: loss and EVERY gradient on every device bitwise equal to the run without recompute (max |Δ| = 0,
//     as tests/recompute-executor.test.ts: same kernels on the same inputs, the original routing state);
//   - memory: the largest per-device HBM `activations` peak goes down (every device's, here);
//   - communication: the replayed forward reruns its collectives. EP all-to-all bytes (ledger labels
//     ep.dispatch*, ep.combine*) with full = without + Σ over the forward's ep.dispatch + ep.dispatch.probs +
//     ep.combine records, i.e. Δ = (2H + 1)·4·R bytes with R the token rows a rank sends off-rank in the
//     forward (fp32: H floats per dispatched and per combined row, 1 probability per row), summed over
//     micro-batches, MoE layers and ranks; the backward all-to-alls are unchanged. TP collectives likewise;
//   - refusals: what is still not executed inside stages (cp, permute/router recompute) is refused up front;
//   - against the single-device oracle (runPP, 1e-5) and no tensor leaks across steps.
import * as assert from 'uvu/assert';
import { forEachBackend, assertNoLeak } from './support/backends.ts';
import { assertSameStep, assertValidTimeline, ppCfg, runPP, stageGrads, S, V } from './support/pp.ts';
import { Cluster, getSpec } from '../src/device/index.ts';
import type { AuxLossType } from '../src/model/config.ts';
import { PipelineParallelModel, type PipelineParallelOptions } from '../src/parallel/pp/pp-model.ts';
import { peakByCategory } from '../src/parallel/exec/report.ts';
import { stageMemoryProblems } from '../src/parallel/pp/stage-memory-rules.ts';
import { parseTrainArgs } from '../src/cli/commands/train.ts';

const B = 8, M = 4, H = 32;
const FULL = { recompute: 'full' };
const tokens = Int32Array.from({ length: B * S }, (_, i) => (i * 7 + 3) % V);
const targets = Int32Array.from({ length: B * S }, (_, i) => (i * 5 + 1) % V);
const FWD_A2A = ['ep.dispatch', 'ep.dispatch.probs', 'ep.combine'];
const isA2A = (label: string) => /^ep\.(dispatch|combine)/.test(label);

function run(o: Partial<PipelineParallelOptions>, aux: AuxLossType = 'switch') {
  const cluster = new Cluster({ spec: getSpec('ascend-910b'), nodes: 1, devicesPerNode: 8 });
  const pp = new PipelineParallelModel(ppCfg(aux), cluster, { layout: 'pp=2,ep=2', schedule: '1f1b', seed: 5, ...o });
  const rep = pp.forwardBackward(tokens, targets, B, S, { microBatches: M });
  const grads = stageGrads(pp);
  const byLabel = new Map<string, number>(), recs = cluster.commLedger.records;
  for (const r of recs) byLabel.set(r.label, (byLabel.get(r.label) ?? 0) + r.bytes);
  const out = {
    loss: rep.loss, grads, byLabel,
    actPeak: peakByCategory(cluster, pp.devices.flat()).map((p) => p.activations),
    a2aBytes: recs.filter((r) => r.group === 'ep' && isA2A(r.label)).reduce((a, r) => a + r.bytes, 0),
    tpBytes: cluster.commLedger.total({ group: 'tp' }),
  };
  if (o.overlap) assertValidTimeline(cluster.timeline, 'full recompute, overlap on');
  pp.dispose();
  return out;
}

const maxOf = (xs: number[]) => Math.max(...xs);
function assertPeaksLower(got: ReturnType<typeof run>, ref: ReturnType<typeof run>, what: string): void {
  assert.ok(maxOf(got.actPeak) < maxOf(ref.actPeak), `${what}: largest activations peak ${maxOf(got.actPeak)} not below ${maxOf(ref.actPeak)}`);
  got.actPeak.forEach((p, d) => assert.ok(p < ref.actPeak[d], `${what}: device ${d} activations peak ${p} not below ${ref.actPeak[d]}`));
}

forEachBackend('PP × EP/TP/DP: full recompute replays layers in lockstep', (test) => {
  test('pp=2 × ep=2 1F1B: bitwise gradients, lower peaks, EP a2a bytes + exactly the replayed forward dispatch+combine', () => {
    const ref = run({}), r = run({ memory: FULL });
    assertSameStep(r, ref, 0, 'pp=2,ep=2');
    assertPeaksLower(r, ref, 'pp=2,ep=2');
    const fwd = FWD_A2A.map((l) => ref.byLabel.get(l) ?? 0), delta = fwd.reduce((a, b) => a + b, 0);
    const rows = fwd[1] / 4;   // one fp32 probability per row sent off-rank
    assert.ok(rows > 0 && Number.isInteger(rows));
    assert.is(fwd[0], rows * H * 4, 'dispatch: H floats per row');
    assert.is(fwd[2], fwd[0], 'combine returns the dispatched rows');
    assert.is(r.a2aBytes - ref.a2aBytes, delta, 'Δ EP a2a bytes = forward dispatch + probs + combine');
    assert.is(delta, (2 * H + 1) * 4 * rows);
    for (const l of FWD_A2A) assert.is(r.byLabel.get(l), 2 * ref.byLabel.get(l)!, `${l} twice`);
    for (const l of ['ep.combine.bwd', 'ep.dispatch.bwd', 'ep.dispatch.probs.bwd']) assert.is(r.byLabel.get(l), ref.byLabel.get(l), `${l} unchanged`);
  });

  test('groups of 2 layers (--recompute-num-layers 2) with overlap on: same numbers, lower peaks, valid timeline', () => {
    const ref = run({ overlap: true }), r = run({ overlap: true, memory: { ...FULL, recomputeNumLayers: 2 } });
    assertSameStep(r, ref, 0, 'groups of 2, overlap');
    assertPeaksLower(r, ref, 'groups of 2, overlap');
    assert.is(r.a2aBytes - ref.a2aBytes, FWD_A2A.reduce((a, l) => a + ref.byLabel.get(l)!, 0));
  });

  test('interleaved vpp=2 with global aux (the replay gets the original routing state back): same numbers', () => {
    const o = { vpp: 2, schedule: 'interleaved' as const };
    const ref = run(o, 'global'), r = run({ ...o, memory: FULL }, 'global');
    assertSameStep(r, ref, 0, 'interleaved global aux');
    assertPeaksLower(r, ref, 'interleaved global aux');
  });

  test('pp=2 × tp=2 × ep=2 (SP), pp=2 × tp=2, pp=2 × dp=2 GPipe: same numbers, lower peaks, TP collectives rerun', () => {
    for (const o of [{ layout: 'pp=2,tp=2,ep=2', sequenceParallel: true }, { layout: 'pp=2,tp=2' }, { layout: 'pp=2,dp=2', schedule: 'gpipe' as const }]) {
      const ref = run(o), r = run({ ...o, memory: FULL });
      assertSameStep(r, ref, 0, o.layout);
      assertPeaksLower(r, ref, o.layout);
      if (o.layout.includes('tp')) assert.ok(r.tpBytes > ref.tpBytes, `${o.layout}: TP bytes ${r.tpBytes} not above ${ref.tpBytes}`);
    }
  });

  test('against the single-device oracle (1e-5): pp=2 × ep=2 and pp=2 × dp=2 × ep=2 tied embeddings', () => {
    runPP(ppCfg(), { layout: 'pp=2,ep=2', schedule: '1f1b', memory: FULL }, 8, 4);
    runPP(ppCfg('switch', 4, { tieEmbeddings: true }), { layout: 'pp=2,dp=2,ep=2', schedule: '1f1b', memory: FULL }, 8, 4);
  });

  test('accepted by the CLI and the model; what is still not executed is refused up front with the reason', () => {
    assert.equal(stageMemoryProblems('full', 'none', undefined, 'x'), []);
    const cli = (argv: string[]) => parseTrainArgs(argv, false).problems;
    assert.equal(cli(['--parallel', 'pp=2,ep=2', '--micro-batches', '4', '--recompute', 'full']), []);
    assert.equal(cli(['--parallel', 'pp=2,tp=2,ep=2', '--micro-batches', '4', '--recompute', 'full', '--recompute-num-layers', '2']), []);
    const p = stageMemoryProblems('permute,router', 'none', undefined, 'x');
    assert.ok(p.length === 2 && p[0].includes('all-to-all') && p[1].includes('router'));
    assert.ok(cli(['--parallel', 'pp=2,ep=2,cp=2', '--recompute', 'full', '--override', JSON.stringify({ attention: 'gqa' })]).some((x) => x.includes('cp=2 with pp > 1 is not supported')));
    const cluster = new Cluster({ spec: getSpec('ascend-910b'), nodes: 1, devicesPerNode: 8 });
    assert.throws(() => new PipelineParallelModel(ppCfg('switch', 4, { attention: 'gqa' }), cluster, { layout: 'pp=2,cp=2', seed: 5, memory: FULL }), /--recompute full with cp > 1/);
  });

  test('numTensors stable across steps (pp=2 × ep=2 interleaved, overlap on, full recompute)', async () => {
    const cluster = new Cluster({ spec: getSpec('ascend-910b'), nodes: 1, devicesPerNode: 4 });
    const pp = new PipelineParallelModel(ppCfg(), cluster, { layout: 'pp=2,ep=2', vpp: 2, schedule: 'interleaved', seed: 5, overlap: true, memory: FULL });
    await assertNoLeak(() => { pp.forwardBackward(tokens, targets, B, S, { microBatches: M }); pp.zeroGrad(); }, 'PipelineParallelModel step with full recompute');
    pp.dispose();
  });
});
