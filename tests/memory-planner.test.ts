import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { PRESETS } from '../src/model/config.ts';
import { modelLayout } from '../src/parallel/memory/descriptors.ts';
import { makePlan } from '../src/parallel/memory/policy.ts';
import { evaluatePlan } from '../src/parallel/memory/cost.ts';
import { planMemory } from '../src/parallel/memory/planner.ts';

const test = suite('memory planner');
// tiny, seq 256 × micro-batch 4, whole model on one device (pp=1: one micro-batch in flight).
// Ascend 910B: 256 TFLOPS × 0.09 (its GEMM efficiency curve below 1 GFLOP, which every tiny GEMM
// is), host link PCIe 4.0 x16 32 GB/s × 0.8. Same numbers as examples/pipeline-memory-planner.ts.
const layout = modelLayout(PRESETS.tiny, { seqLen: 256, microBatchSize: 4 });
const hw = { flops: 256e12 * 0.09, hostBandwidth: 25.6e9, inFlight: 1, forwardFlops: layout.forwardFlops };
const baseline = evaluatePlan(makePlan(layout.descs), hw);

test('a budget above the baseline changes nothing', () => {
  const r = planMemory(layout.descs, { ...hw, budgetBytes: baseline.peakBytes });
  assert.ok(r.fits);
  assert.ok(r.plan.entries.every((e) => e.decision === 'keep'));
  assert.is(r.cost.addedTime, 0);
});

test('30% of the no-recompute peak (tiny layout): fits, cheaper than full recomputation; 50% within 10%', () => {
  const r = planMemory(layout.descs, { ...hw, budgetBytes: 0.3 * baseline.peakBytes });
  assert.ok(r.fits, `peak ${r.cost.peakBytes} > ${0.3 * baseline.peakBytes}`);
  assert.ok(r.cost.peakBytes <= 0.3 * r.baseline.peakBytes);
  // Cheaper than full recomputation, which also fits this budget. Not within 10% at pp=1: the last
  // layer's grouped-expert backward holds its MoE tensors together (~11 MiB), so the other layers must
  // drop expensive tensors too (docs/pipeline-execution.md §5).
  const full = evaluatePlan(makePlan(layout.descs, { recomputeGranularity: 'full' }), hw);
  assert.ok(full.peakBytes <= 0.3 * baseline.peakBytes);
  assert.ok(r.cost.addedTime < 0.75 * full.addedTime, `added ${r.cost.addedTime} vs full ${full.addedTime}`);
  const half = planMemory(layout.descs, { ...hw, budgetBytes: 0.5 * baseline.peakBytes });
  assert.ok(half.fits && half.cost.addedFraction <= 0.10, `50%: added ${half.cost.addedFraction}`);
  // The explanation covers every class once, bytes add up, and chosen classes say why.
  const total = layout.descs.reduce((s, d) => s + d.bytes, 0);
  assert.is(r.explanation.reduce((s, e) => s + e.bytes, 0), total);
  assert.is(new Set(r.explanation.map((e) => e.module)).size, r.explanation.length);
  const act = r.explanation.find((e) => e.module === 'moe_act')!;
  assert.ok(act.layers.recompute.length >= 2); // ~1 FLOP per byte: among the cheapest things to drop
  assert.ok(act.why.length > 0);
  const perm = r.explanation.find((e) => e.module === 'permute')!;
  assert.is(perm.decision, 'recompute'); // no FLOPs and no EP traffic on one device
  assert.is(r.explanation.find((e) => e.module === 'residual')!.layers.recompute.length, 0); // selective recompute cannot rebuild it
});

test('options can be restricted; impossible budgets are reported', () => {
  const noSwap = planMemory(layout.descs, { ...hw, budgetBytes: 0.5 * baseline.peakBytes, allowSwap: false });
  assert.ok(noSwap.fits);
  assert.ok(noSwap.plan.entries.every((e) => e.decision !== 'swap'));
  const swapOnly = planMemory(layout.descs, { ...hw, budgetBytes: 0.8 * baseline.peakBytes, allowRecompute: false });
  assert.ok(swapOnly.plan.entries.every((e) => e.decision !== 'recompute'));
  assert.ok(swapOnly.plan.entries.some((e) => e.decision === 'swap'));
  const impossible = planMemory(layout.descs, { ...hw, budgetBytes: 1e3 });
  assert.not.ok(impossible.fits);
});

test('a fast host link makes swap the choice for compute-heavy tensors', () => {
  const r = planMemory(layout.descs, { ...hw, hostBandwidth: 1e13, budgetBytes: 0.5 * baseline.peakBytes });
  assert.ok(r.fits);
  assert.is(r.cost.addedTime, 0);
  assert.ok(r.plan.entries.some((e) => e.decision === 'swap'));
});

test.run();
