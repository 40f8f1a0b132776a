// Validation of the cost model against published runs (src/sim/validation.ts): pins the mean
// error, the paper's endpoints, and that CALIBRATIONS are what the fit produces.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assertClose } from './support/backends.ts';
import { CALIBRATIONS } from '../src/sim/calibration.ts';
import { fitAscendCalibration, fitGpuCalibration, groupErrors, meanAbsError, paperRows, runOptions, simulateRun, validationRows } from '../src/sim/validation.ts';
import { GOODPUT_WHOLE_RUN, PUBLISHED_RUNS } from '../src/sim/workloads.ts';
import { getSpec } from '../src/device/specs.ts';
import { simulate } from '../src/sim/cost-model.ts';
import { modelCost } from '../src/sim/model-cost.ts';

const test = suite('sim-validation');

test('mean |error| over all published runs, fit and held-out', () => {
  const rows = validationRows();
  assert.is(rows.length, 14);
  const all = meanAbsError(rows);
  const held = meanAbsError(rows.filter((r) => r.role === 'holdout'));
  const fit = meanAbsError(rows.filter((r) => r.role === 'fit'));
  // measured values at the time of writing (docs/simulator.md): all 3.61%, fit 2.59%, held-out 4.62%
  // (before the fixed kernel costs: 3.66%, 2.64%, 4.68%)
  assert.ok(all < 0.037, `mean error ${all}`);
  assert.ok(fit < 0.027, `fit error ${fit}`);
  assert.ok(held < 0.047, `held-out error ${held}`);
  // every run within 10%; the dense GPT runs (Korthikanti Table 5) and the Megatron DeepSeek-V3 H100 runs within 6%
  for (const r of rows) assert.ok(Math.abs(r.error) < 0.1, `${r.id} ${r.error}`);
  for (const r of rows.filter((x) => x.id.startsWith('korth') || x.id.startsWith('dsv3-h100'))) assert.ok(Math.abs(r.error) < 0.06, `${r.id} ${r.error}`);
  // the per-kind means (dense GPU, MoE GPU, MoE NPU) each under 6%
  const g = groupErrors(rows);
  for (const k of ['dense GPU', 'MoE GPU', 'MoE NPU']) assert.ok(g[k].meanAbsError < 0.06, `${k} ${g[k].meanAbsError}`);
  assert.is(g.holdout.n, 7);
});

test('DeepSeek-V3 on 2048 H800: whole-run accounting (goodput 0.9) is the only correction; steady state within 25%', () => {
  const r = PUBLISHED_RUNS.find((x) => x.id === 'dsv3-h800x2048-fp8')!;
  assert.is(r.goodput, GOODPUT_WHOLE_RUN);
  const steady = simulateRun(r).tokensPerSecond / r.tokensPerSecond - 1;
  // measured at the time of writing: +20.3% steady state, +8.3% after goodput
  assert.ok(steady > 0.1 && steady < 0.25, `${steady}`);
});

test('kernel efficiencies from the spec: fused attention and the FP8 GEMM ceiling slow the DeepSeek-V3 FP8 runs', () => {
  const r = PUBLISHED_RUNS.find((x) => x.id === 'dsv3-h100x1024-fp8')!;
  const spec = getSpec(r.device);
  const mc = modelCost(r.model, r.layout.seqLen, true, r.gatedMlp);
  const o = runOptions(r, CALIBRATIONS.gpu);
  const base = simulate(mc, r.layout, o, spec).time.compute;
  const noAttn = simulate(mc, r.layout, o, { ...spec, efficiency: { ...spec.efficiency, attention: undefined } }).time.compute;
  const noCap = simulate(mc, r.layout, o, { ...spec, efficiency: { ...spec.efficiency, fp8Gemm: undefined } }).time.compute;
  assert.ok(base > noAttn * 1.03 && base > noCap * 1.1, `${base} ${noAttn} ${noCap}`);
});

test('every published run fits in memory (they all ran)', () => {
  for (const r of validationRows()) assert.ok(r.fits, `${r.id} does not fit`);
});

test('paper endpoints within 2 MFU points: 18.9% (4K NPUs) and 30.0% (6K NPUs)', () => {
  const [base, opt] = paperRows();
  assertClose([base.predicted], [0.189], 0.02 / 0.189, 'baseline');
  assertClose([opt.predicted], [0.300], 0.02 / 0.300, 'optimised');
  assert.ok(base.fits && opt.fits);
});

test('CALIBRATIONS are the grid-fit optimum', () => {
  const gpu = fitGpuCalibration().calibration;
  assertClose([gpu.gemmScale, gpu.a2aScale], [CALIBRATIONS.gpu.gemmScale, CALIBRATIONS.gpu.a2aScale], 1e-9, 'gpu');
  const asc = fitAscendCalibration().calibration;
  assertClose([asc.gemmScale, asc.a2aScale], [CALIBRATIONS.ascend.gemmScale, CALIBRATIONS.ascend.a2aScale], 1e-9, 'ascend');
});

test.run();
