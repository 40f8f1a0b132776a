// Selective recompute and swap per device inside pipeline stages that run EP (src/parallel/pp/stage-memory.ts).
// pp=2 × ep=2 (4 devices), 1F1B with 4 micro-batches and interleaved vpp=2 with overlap on; pp=2 × tp=2 × ep=2
// with sequence parallelism (8 devices):
//   - loss and EVERY gradient on every device equal the run without recompute/swap (max |Δ| ≤ 1e-7; a recipe
//     reruns the same kernel on the same inputs and a reload returns the same tensor, so 0 is measured);
//   - recompute: the HBM `activations` peak of every device goes down; one `recompute` op per device and
//     layer with dropped entries is charged on the device's compute stream;
//   - swap: every device moves bytes to host (`host-copy`) and reloads exactly the same bytes
//     (`host-copy-in`), each entry once, host memory back to 0; the same bytes with overlap on and off;
//   - refusals: 'permute'/'router' recompute, every problem listed (full recompute: tests/pp-recompute-full.test.ts);
//   - no tensor leaks across steps.
import * as assert from 'uvu/assert';
import { forEachBackend, assertNoLeak } from './support/backends.ts';
import { assertSameStep, ppCfg, stageGrads, S, V } from './support/pp.ts';
import { Cluster, getSpec } from '../src/device/index.ts';
import { PipelineParallelModel, type PipelineParallelOptions } from '../src/parallel/pp/pp-model.ts';
import { peakByCategory } from '../src/parallel/exec/report.ts';
import { stageMemoryProblems } from '../src/parallel/pp/stage-memory-rules.ts';

const B = 8, M = 4, TOL = 1e-7;
const RECOMPUTE = 'norm,mla_up_proj,core_attn,expert_fc1,moe_act,mlp_act';
const SWAP = 'core_attn,expert_fc1,moe_act,permute';
const tokens = Int32Array.from({ length: B * S }, (_, i) => (i * 7 + 3) % V);
const targets = Int32Array.from({ length: B * S }, (_, i) => (i * 5 + 1) % V);

function run(o: Partial<PipelineParallelOptions>) {
  const cluster = new Cluster({ spec: getSpec('ascend-910b'), nodes: 1, devicesPerNode: 8 });
  const pp = new PipelineParallelModel(ppCfg(), cluster, { layout: 'pp=2,ep=2', schedule: '1f1b', seed: 5, ...o });
  const rep = pp.forwardBackward(tokens, targets, B, S, { microBatches: M });
  const grads = stageGrads(pp);
  const devs = pp.devices.flat(), ev = cluster.timeline.events;
  const out = {
    loss: rep.loss, grads,
    actPeak: peakByCategory(cluster, devs).map((p) => p.activations),
    stats: pp.memory.map((m) => m?.stats() ?? null),
    hostUsed: cluster.hosts.map((h) => h.snapshot().used),
    recomputeOps: devs.map((d) => ev.filter((e) => e.device === d && e.stream === 'compute' && /recompute/.test(e.name)).length),
    swapOut: devs.map((d) => ev.filter((e) => e.device === d && e.stream === 'host-copy').reduce((a, e) => a + Number(e.args?.bytes ?? 0), 0)),
    swapIn: devs.map((d) => ev.filter((e) => e.device === d && e.stream === 'host-copy-in').reduce((a, e) => a + Number(e.args?.bytes ?? 0), 0)),
  };
  pp.dispose();
  return out;
}

forEachBackend('PP × EP: selective recompute and swap per device', (test) => {
  test('recompute of local classes: same loss and gradients, every device\'s activation peak lower, R ops charged', () => {
    const ref = run({}), r = run({ memory: { recompute: RECOMPUTE } });
    assertSameStep(r, ref, TOL, 'recompute');
    r.actPeak.forEach((p, d) => assert.ok(p < ref.actPeak[d], `device ${d}: activations peak ${p} not below ${ref.actPeak[d]}`));
    r.recomputeOps.forEach((n, d) => assert.ok(n > 0, `device ${d}: no recompute op`));
    assert.ok(ref.recomputeOps.every((n) => n === 0));
  });

  test('swap: same numbers, bytes out = bytes reloaded on every device, host back to 0, same bytes with overlap on', () => {
    const ref = run({}), r = run({ memory: { swap: SWAP } });
    assertSameStep(r, ref, TOL, 'swap');
    r.actPeak.forEach((p, d) => assert.ok(p <= ref.actPeak[d], `device ${d}: activations peak ${p} above ${ref.actPeak[d]}`));
    assert.ok(r.actPeak.some((p, d) => p < ref.actPeak[d]));
    const st = r.stats.flatMap((s) => { assert.ok(s); return s!.swappedOutBytes.map((b, i) => ({ out: b, back: s!.reloadedBytes[i], problems: s!.reloadProblems })); });
    st.forEach((x, d) => { assert.ok(x.out > 0, `device ${d} swapped nothing`); assert.is(x.back, x.out, `device ${d}`); assert.equal(x.problems, []); });
    // the timeline's copies carry the same bytes as the ledgers (simulated bytes: fp32 here)
    assert.equal(r.swapOut, st.map((x) => x.out));
    assert.equal(r.swapIn, r.swapOut);
    assert.equal(r.hostUsed, r.hostUsed.map(() => 0));
    const ov = run({ memory: { swap: SWAP }, overlap: true });
    assert.equal(ov.swapOut, r.swapOut, 'same bytes moved with overlap on');
    assertSameStep(ov, ref, TOL, 'swap, overlap on');
  });

  test('interleaved vpp=2 with overlap on, recompute + swap together: same numbers as without', () => {
    const o = { vpp: 2, schedule: 'interleaved' as const, overlap: true };
    const ref = run(o), r = run({ ...o, memory: { recompute: 'core_attn,moe_act', swap: 'mla_up_proj' } });
    assertSameStep(r, ref, TOL, 'interleaved overlap');
    r.actPeak.forEach((p, d) => assert.ok(p < ref.actPeak[d], `device ${d}: activations peak ${p} not below ${ref.actPeak[d]}`));
    assert.ok(r.swapIn.every((b, d) => b === r.swapOut[d] && b > 0));
  });

  test('pp=2 × tp=2 × ep=2 with sequence parallelism, every local class recomputed + swap: same numbers, peaks lower', () => {
    const o = { layout: 'pp=2,tp=2,ep=2', sequenceParallel: true };
    const ref = run(o), r = run({ ...o, memory: { recompute: 'norm,mla_down_proj,mla_up_proj,core_attn,attn_proj,expert_fc1,moe_act,mlp_fc1,mlp_act', swap: 'permute' } });
    assertSameStep(r, ref, TOL, 'tp × ep');
    r.actPeak.forEach((p, d) => assert.ok(p < ref.actPeak[d], `device ${d}: activations peak ${p} not below ${ref.actPeak[d]}`));
    assert.ok(r.swapIn.every((b, d) => b === r.swapOut[d]) && r.swapOut.some((b) => b > 0));
  });

  test('what needs communication or the single-device planner is refused, every problem listed', () => {
    const p = stageMemoryProblems('permute,router,core_attn', 'none', 1 << 20, 'x');
    assert.is(p.length, 2); // a memory budget is planned per stage (stage-budget.ts, tests/pp-stage-budget.test.ts)
    assert.ok(p[0].includes('--recompute permute') && p[0].includes('all-to-all'));
    assert.ok(p[1].includes('--recompute router'));
    assert.equal(stageMemoryProblems(RECOMPUTE, SWAP, undefined, 'x'), []);
    const cluster = new Cluster({ spec: getSpec('ascend-910b'), nodes: 1, devicesPerNode: 4 });
    assert.throws(() => new PipelineParallelModel(ppCfg(), cluster, { layout: 'pp=2,ep=2', seed: 5, memory: { recompute: 'router' } }), /--recompute router is not executed/);
  });

  test('numTensors stable across steps with recompute and swap (pp=2,ep=2 interleaved, overlap on)', async () => {
    const cluster = new Cluster({ spec: getSpec('ascend-910b'), nodes: 1, devicesPerNode: 4 });
    const pp = new PipelineParallelModel(ppCfg(), cluster, { layout: 'pp=2,ep=2', vpp: 2, schedule: 'interleaved', seed: 5, overlap: true, memory: { recompute: RECOMPUTE, swap: 'permute' } });
    await assertNoLeak(() => { pp.forwardBackward(tokens, targets, B, S, { microBatches: M }); pp.zeroGrad(); }, 'PipelineParallelModel step with recompute/swap');
    pp.dispose();
  });
});
