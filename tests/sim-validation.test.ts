// Validation of the cost model against published runs (src/sim/validation.ts): pins the mean
// error, the paper's endpoints, and that CALIBRATIONS are what the fit produces.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assertClose } from './support/backends.ts';
import { CALIBRATIONS } from '../src/sim/calibration.ts';
import { fitAscendCalibration, fitGpuCalibration, meanAbsError, paperRows, validationRows } from '../src/sim/validation.ts';

const test = suite('sim-validation');

test('mean |error| over all published runs, fit and held-out', () => {
  const rows = validationRows();
  assert.is(rows.length, 14);
  const all = meanAbsError(rows);
  const held = meanAbsError(rows.filter((r) => r.role === 'holdout'));
  const fit = meanAbsError(rows.filter((r) => r.role === 'fit'));
  // measured values at the time of writing (docs/simulator.md): all 7.3%, fit 3.0%, held-out 11.7%
  // (the DeepSeek-V3 H800 row alone is +46%; without it the held-out mean is 5.9%)
  assert.ok(all < 0.08, `mean error ${all}`);
  assert.ok(fit < 0.05, `fit error ${fit}`);
  assert.ok(held < 0.125, `held-out error ${held}`);
  const heldNoH800 = meanAbsError(rows.filter((r) => r.role === 'holdout' && r.id !== 'dsv3-h800x2048-fp8'));
  assert.ok(heldNoH800 < 0.065, `held-out without the H800 run ${heldNoH800}`);
  // dense GPT runs (Korthikanti Table 5): every run within 12%
  for (const r of rows.filter((x) => x.id.startsWith('korth'))) assert.ok(Math.abs(r.error) < 0.12, `${r.id} ${r.error}`);
  // the Megatron DeepSeek-V3 runs on H100 (BF16 and FP8) within 10%
  for (const r of rows.filter((x) => x.id.startsWith('dsv3-h100'))) assert.ok(Math.abs(r.error) < 0.1, `${r.id} ${r.error}`);
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
