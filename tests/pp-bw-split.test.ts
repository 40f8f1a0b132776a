// Backward split (B/W) on the executed PP × EP timeline (clock.ts `backward`, pp/pipe-clock.ts, pp/gap-fill.ts
// fillers): each layer's backward charge (attention, dense MLP, routed experts, router + shared expert)
// becomes a dX op (on the micro-batch's chain) and a dW op (same inputs, nothing in the F/B pair depends on
// it; only the step's gradient sync waits for it). Checked on pp=4 × ep=2, M = 8:
//   - dX and dW ops exist in equal numbers with equal FLOPs; with overlap on no op except the gradient sync
//     depends on a dW (with overlap off dW stays on the per-rank chain);
//   - the per-device compute total is unchanged by the split (1e-9 relative), overlap on and off;
//   - overlap off: the sequential step time is the same with and without the split (1e-9 relative);
//   - timelines are valid (no stream runs two ops at once, every op starts after its dependencies);
//   - overlap on: the EP a2a hidden fraction with the split is ≥ without it;
//   - loss and gradients are the same with and without the split (1e-6).
import { forEachBackend, assert, assertClose } from './support/backends.ts';
import { assertValidTimeline, ppCfg, S, stageGrads, V } from './support/pp.ts';
import { Cluster, getSpec } from '../src/device/index.ts';
import type { Timeline } from '../src/device/timeline.ts';
import { PipelineParallelModel } from '../src/parallel/pp/pp-model.ts';
import { epCommHidden } from '../src/parallel/pp/ep-hidden.ts';

const B = 16, M = 8;
const tokens = Int32Array.from({ length: B * S }, (_, i) => (i * 7 + 3) % V);
const targets = Int32Array.from({ length: B * S }, (_, i) => (i * 5 + 1) % V);

function run(schedule: '1f1b' | 'interleaved', overlap: boolean, split: boolean) {
  const cluster = new Cluster({ spec: getSpec('ascend-910b'), nodes: 1, devicesPerNode: 8 });
  const pp = new PipelineParallelModel(ppCfg('switch', 8), cluster, { layout: 'pp=4,ep=2', vpp: schedule === 'interleaved' ? 2 : 1, schedule, seed: 3, overlap });
  pp.clocks.forEach((c) => { c.splitBackward = split; });
  const rep = pp.forwardBackward(tokens, targets, B, S, { microBatches: M });
  const grads = stageGrads(pp);
  const devices = pp.devices.flat();
  const computeTotal = devices.map((d) => cluster.timeline.events.filter((e) => e.device === d && e.stream === 'compute').reduce((a, e) => a + (e.end - e.start), 0));
  const out = { loss: rep.loss, grads, step: rep.stepSeconds, hidden: epCommHidden(cluster.timeline, devices), computeTotal, tl: cluster.timeline, fillers: pp.filler?.fillers ?? 0, inGaps: pp.filler?.fillersInGaps ?? 0 };
  pp.dispose();
  return out;
}

function assertSplit(tl: Timeline, what: string, offChain: boolean): void {
  const dX = tl.events.filter((e) => e.args.part === 'dX'), dW = tl.events.filter((e) => e.args.part === 'dW');
  assert.ok(dW.length > 0, `${what}: dW ops exist`);
  assert.is(dW.length, dX.length, `${what}: one dW per dX`);
  for (const kind of ['attn bwd', 'experts bwd', 'router+shared bwd']) assert.ok(dW.some((e) => e.name.includes(kind)), `${what}: ${kind} has dW ops`);
  assertClose([dW.reduce((a, e) => a + Number(e.args.flops), 0)], [dX.reduce((a, e) => a + Number(e.args.flops), 0)], 1e-12, `${what}: dW FLOPs = dX FLOPs`);
  if (!offChain) return;   // overlap off: dW stays on the per-rank chain (the sequential timeline of the unsplit op)
  const wIds = new Set(dW.map((e) => e.id));
  const dependents = tl.events.filter((e) => e.deps.some((d) => wIds.has(d)));
  for (const e of dependents) assert.ok(/ dp\./.test(e.name) && e.stream !== 'compute', `${what}: only the gradient sync may wait for a dW (got ${e.name})`);
}

forEachBackend('PP × EP backward split (dX / dW)', (test) => {
  test('1f1b, overlap off: split recorded, same sequential timeline, same numbers', () => {
    const split = run('1f1b', false, true), whole = run('1f1b', false, false);
    assertSplit(split.tl, '1f1b off', false);
    assert.ok(!whole.tl.events.some((e) => e.args.part === 'dW'), 'no dW without the split');
    assertClose(split.computeTotal, whole.computeTotal, 1e-9, 'per-device compute total unchanged by the split');
    assertClose([split.step], [whole.step], 1e-9, 'sequential step time unchanged by the split');
    assertClose([split.loss], [whole.loss], 1e-6, 'loss');
    for (const [k, g] of whole.grads) assertClose(split.grads.get(k)!, g, 1e-6, k);
    assertValidTimeline(split.tl, '1f1b off split');
  });
  for (const schedule of ['1f1b', 'interleaved'] as const) {
    test(`${schedule}, overlap on: dW fills gaps, compute total unchanged, hidden fraction not lower, same numbers`, () => {
      const split = run(schedule, true, true), whole = run(schedule, true, false);
      assertSplit(split.tl, `${schedule} on`, true);
      assertClose(split.computeTotal, whole.computeTotal, 1e-9, 'per-device compute total unchanged by the split');
      assert.ok(split.fillers > 0, `${schedule}: dW placed by the pair scheduler as fillers`);
      assert.is(whole.fillers, 0);
      assert.ok(split.hidden.fraction >= whole.hidden.fraction, `${schedule}: hidden ${split.hidden.fraction} with the split, ${whole.hidden.fraction} without`);
      assert.is(split.hidden.events, whole.hidden.events, 'the same EP a2a ops');
      assertClose([split.loss], [whole.loss], 1e-6, 'loss');
      for (const [k, g] of whole.grads) assertClose(split.grads.get(k)!, g, 1e-6, k);
      assertValidTimeline(split.tl, `${schedule} on split`);
      assertValidTimeline(whole.tl, `${schedule} on whole`);
    });
  }
}, ['wasm']);   // the timeline does not depend on the backend
