// Fixed per-kernel costs (src/sim/kernels.ts): kernel counts from the layer structure, the device's launch cost
// per kernel, the host-bound check, and the width/depth trade-off they imply at a fixed parameter count.
// Simulated time only (deterministic).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { getSpec } from '../src/device/specs.ts';
import { simulate } from '../src/sim/cost-model.ts';
import { bwdKernels, fwdKernels, layerKernels, recomputeKernels } from '../src/sim/kernels.ts';
import { modelCost } from '../src/sim/model-cost.ts';
import { PAPER_MODEL, PAPER_OPTIMISED_OPTIONS, paperLayout } from '../src/sim/paper.ts';
import { variantConfig } from '../src/sim/search.ts';
import { RECOMPUTE_MODULES } from '../src/sim/types.ts';

const test = suite('sim-kernels');
const spec = getSpec('ascend-910b');

test('kernel counts of a Pangu layer: MLA 14 forward kernels, MoE with a shared expert 18, heads with one MTP module', () => {
  const lk = layerKernels(PAPER_MODEL);
  assert.equal(lk.attn, { gemm: 5, other: 8, core: 1 });
  assert.equal(lk.moe, { gemm: 5, other: 15, core: 0 });
  assert.equal(lk.dense, { gemm: 2, other: 3, core: 0 });
  // main head (norm, GEMM, 3 cross-entropy kernels) + MTP (2 norms, concat, projection, its own head)
  assert.equal(lk.head, { gemm: 3, other: 11, core: 0 });
  assert.is(fwdKernels(lk.attn) + bwdKernels(lk.attn), 33);
  assert.is(fwdKernels(lk.moe) + bwdKernels(lk.moe), 45);
  // full recompute re-runs the forward; selective modules re-run fewer kernels
  assert.is(recomputeKernels(PAPER_MODEL, true, null, true), fwdKernels(lk.attn) + fwdKernels(lk.moe));
  assert.ok(recomputeKernels(PAPER_MODEL, false, new Set(RECOMPUTE_MODULES), true) < recomputeKernels(PAPER_MODEL, true, null, true));
});

test('the optimised Pangu step: fixed kernel costs are 0.8% of the step (78 kernels per layer and micro-batch at 10 us)', () => {
  const mc = modelCost(PAPER_MODEL, 4096, false);
  const r = simulate(mc, paperLayout(6144), PAPER_OPTIMISED_OPTIONS, spec);
  const none = simulate(mc, paperLayout(6144), { ...PAPER_OPTIMISED_OPTIONS, fixedCosts: 'none' }, spec);
  assert.is(none.time.overhead, 0);
  const share = r.time.overhead / r.time.total;
  assert.ok(share > 0.005 && share < 0.012, `share ${share}`);
  // the step grows by the fixed costs plus their share of the bubble (the bubble scales with the stage time)
  assert.ok(r.stepTimeSeconds > none.stepTimeSeconds + r.time.overhead * 0.99, `${r.stepTimeSeconds} ${none.stepTimeSeconds}`);
});

test('host-bound: a layer whose kernels take longer to dispatch than to run is charged the dispatch time', () => {
  const mc = modelCost(PAPER_MODEL, 4096, false);
  const slowHost = { ...spec, efficiency: { ...spec.efficiency, hostDispatch: 0.05 } }; // 50 ms per kernel
  const r = simulate(mc, paperLayout(6144), PAPER_OPTIMISED_OPTIONS, slowHost);
  const base = simulate(mc, paperLayout(6144), PAPER_OPTIMISED_OPTIONS, spec);
  assert.ok(r.time.overhead > 10 * base.time.overhead, `${r.time.overhead} vs ${base.time.overhead}`);
  // at the catalogue's 20 us per kernel the host never binds: without host dispatch only the MoE host syncs (one
  // dispatch each, 20 us per MoE layer and micro-batch against 78 launches of 10 us) get cheaper
  const noHost = simulate(mc, paperLayout(6144), PAPER_OPTIMISED_OPTIONS, { ...spec, efficiency: { ...spec.efficiency, hostDispatch: 0 } });
  const d = 1 - noHost.time.overhead / base.time.overhead;
  assert.ok(d > 0 && d < 0.03, `${d}`);
});

test('width vs depth at equal parameters: the deeper, narrower shape loses more MFU to fixed costs', () => {
  // relative MFU lost to the fixed kernel costs at the paper's layout (TP8 PP16 VPP2 EP32)
  const loss = (hidden: number, layers: number) => {
    const cfg = variantConfig(PAPER_MODEL, { hidden, layers, experts: 256, expertSize: 2048, topk: 8, heads: 128 });
    const mc = modelCost(cfg, 4096, false);
    const r = simulate(mc, paperLayout(6144), PAPER_OPTIMISED_OPTIONS, spec);
    const none = simulate(mc, paperLayout(6144), { ...PAPER_OPTIMISED_OPTIONS, fixedCosts: 'none' }, spec);
    return 1 - r.mfu / none.mfu;
  };
  // measured at the time of writing: 6656 x 68 loses 2.15%, 7680 x 61 0.92% (its heaviest stage is the last one,
  // with the heads and fewer layers), 7680 x 60 1.91%
  const deep = loss(6656, 68), paper = loss(7680, 61), wide60 = loss(7680, 60);
  assert.ok(deep > wide60 && wide60 > paper, `${deep} ${wide60} ${paper}`);
  assert.ok(deep < 0.03, `${deep}`);
});

test.run();
