// Validation of the cost model against published runs: per-run relative error of the predicted
// throughput, the mean over fit and held-out runs, and the grid fit that produced CALIBRATIONS.
import { getSpec } from '../device/specs.ts';
import { CALIBRATIONS, GEMM_SCALE_GRID, A2A_SCALE_GRID } from './calibration.ts';
import { simulate } from './cost-model.ts';
import { modelCost } from './model-cost.ts';
import { PAPER_MODEL, PAPER_DEVICE, paperLayout, PAPER_BASELINE_OPTIONS, PAPER_OPTIMISED_OPTIONS } from './paper.ts';
import { PUBLISHED_RUNS, type PublishedRun } from './workloads.ts';
import { DEFAULT_OPTIONS, type Calibration, type SimOptions, type SimResult } from './types.ts';

export interface ValidationRow {
  id: string;
  group: string;
  role: 'fit' | 'holdout';
  measured: number;
  predicted: number;
  /** (predicted − measured) / measured */
  error: number;
  metric: 'tokens/s' | 'MFU';
  fits: boolean;
  /** kind of run, for the per-kind mean error */
  kind: 'dense GPU' | 'MoE GPU' | 'MoE NPU';
}

export function runOptions(r: PublishedRun, cal: Calibration, extra: Partial<SimOptions> = {}): SimOptions {
  return {
    ...DEFAULT_OPTIONS, dtype: r.dtype, fp8Recipe: r.fp8Recipe, mfuDtype: 'bf16', schedule: r.schedule, recompute: r.recompute,
    recomputeModules: r.recomputeModules, hierarchicalA2A: r.hierarchicalA2A ?? false,
    adaptivePipeOverlap: r.adaptivePipeOverlap ?? false, imbalance: r.imbalance ?? 1,
    distributedOptimizer: r.distributedOptimizer, bf16AdamMoments: r.bf16AdamMoments, fp8SwigluInputs: r.fp8SwigluInputs, gatedMlp: r.gatedMlp, flashAttention: r.flashAttention ?? true, calibration: cal, ...extra,
  };
}

export function simulateRun(r: PublishedRun, cal: Calibration = CALIBRATIONS[r.group], extra: Partial<SimOptions> = {}): SimResult {
  const mc = modelCost(r.model, r.layout.seqLen, true, r.gatedMlp);
  return simulate(mc, r.layout, runOptions(r, cal, extra), getSpec(r.device));
}

/** The paper's two endpoints as validation rows (metric: MFU). */
export function paperRows(cal: Calibration = CALIBRATIONS.ascend, extra: Partial<SimOptions> = {}): ValidationRow[] {
  const mc = modelCost(PAPER_MODEL, 4096, false);
  const spec = getSpec(PAPER_DEVICE);
  const rows: Array<[string, number, SimOptions, number]> = [
    ['pangu-baseline-4k', 4096, PAPER_BASELINE_OPTIONS, 0.189],
    ['pangu-optimised-6k', 6144, PAPER_OPTIMISED_OPTIONS, 0.300],
  ];
  return rows.map(([id, n, o, mfu]) => {
    const r = simulate(mc, paperLayout(n), { ...o, ...extra, calibration: cal }, spec);
    return { id, group: 'ascend', role: 'fit' as const, measured: mfu, predicted: r.mfu, error: (r.mfu - mfu) / mfu, metric: 'MFU' as const, fits: r.memory.fits, kind: 'MoE NPU' as const };
  });
}

/** Every run as a validation row; `extra` overrides simulator options (e.g. `{ fixedCosts: 'none' }` for the model before fixed costs). */
export function validationRows(cals = CALIBRATIONS, extra: Partial<SimOptions> = {}): ValidationRow[] {
  const rows: ValidationRow[] = PUBLISHED_RUNS.map((r) => {
    const s = simulateRun(r, cals[r.group], extra);
    const predicted = s.tokensPerSecond * (r.goodput ?? 1);
    return {
      id: r.id, group: r.group, role: r.role, measured: r.tokensPerSecond, predicted,
      error: (predicted - r.tokensPerSecond) / r.tokensPerSecond, metric: 'tokens/s', fits: s.memory.fits,
      kind: r.layout.ep > 1 ? 'MoE GPU' : 'dense GPU',
    };
  });
  return [...rows, ...paperRows(cals.ascend, extra)];
}

export function meanAbsError(rows: ValidationRow[]): number {
  return rows.length ? rows.reduce((s, r) => s + Math.abs(r.error), 0) / rows.length : 0;
}

/** Mean |error| per (kind, role) and per role, e.g. { 'dense GPU / holdout': 0.04, 'holdout': 0.047, ... }. */
export function groupErrors(rows: ValidationRow[]): Record<string, { n: number; meanAbsError: number }> {
  const groups = new Map<string, ValidationRow[]>();
  const add = (k: string, r: ValidationRow) => { if (!groups.has(k)) groups.set(k, []); groups.get(k)!.push(r); };
  for (const r of rows) { add(`${r.kind} / ${r.role}`, r); add(r.kind, r); add(r.role, r); add('all', r); }
  return Object.fromEntries([...groups].map(([k, rs]) => [k, { n: rs.length, meanAbsError: meanAbsError(rs) }]));
}

/**
 * Fit the GPU calibration: gemmScale on the Korthikanti fit runs (no expert traffic), then a2aScale
 * on the MoE fit runs with that gemmScale. Returns the calibration and the fit error.
 */
export function fitGpuCalibration(): { calibration: Calibration; fitError: number } {
  const fit = PUBLISHED_RUNS.filter((r) => r.group === 'gpu' && r.role === 'fit');
  const dense = fit.filter((r) => r.layout.ep === 1), moe = fit.filter((r) => r.layout.ep > 1);
  const err = (runs: PublishedRun[], cal: Calibration) =>
    runs.reduce((s, r) => s + Math.abs(simulateRun(r, cal).tokensPerSecond * (r.goodput ?? 1) / r.tokensPerSecond - 1), 0) / Math.max(1, runs.length);
  let best = { ...CALIBRATIONS.gpu }, bestE = Infinity;
  for (const g of GEMM_SCALE_GRID) {
    const e = err(dense, { ...best, gemmScale: g });
    if (e < bestE) { bestE = e; best = { ...best, gemmScale: g }; }
  }
  if (moe.length) {
    bestE = Infinity;
    let a2a = best.a2aScale;
    for (const a of A2A_SCALE_GRID) {
      const e = err(moe, { ...best, a2aScale: a });
      if (e < bestE) { bestE = e; a2a = a; }
    }
    best = { ...best, a2aScale: a2a };
  }
  return { calibration: best, fitError: err(fit, best) };
}

/**
 * Fit the Ascend calibration on the paper's two MFU endpoints (joint grid over gemmScale × a2aScale); `fixed`
 * holds other fields (e.g. `headGemmScale` for the head-cost sensitivity) at given values during the fit.
 */
export function fitAscendCalibration(fixed: Partial<Calibration> = {}): { calibration: Calibration; fitError: number } {
  let best: Calibration = { ...CALIBRATIONS.ascend, ...fixed }, bestE = Infinity;
  for (const g of GEMM_SCALE_GRID) for (const a of A2A_SCALE_GRID) {
    const cal = { ...best, gemmScale: g, a2aScale: a };
    const e = meanAbsError(paperRows(cal));
    if (e < bestE) { bestE = e; best = cal; }
  }
  return { calibration: best, fitError: bestE };
}
