// Calibrated efficiency knobs per hardware family, and the fit that produced them.
// GPU: gemmScale fitted on the 4 Korthikanti "seq+sel" runs, a2aScale on the DeepSeek-V3
// 512×H100 BF16 run; everything else in PUBLISHED_RUNS is held out.
// Ascend: gemmScale and a2aScale fitted on the paper's two endpoints (18.9% and 30.0% MFU): the
// only published Ascend numbers, so nothing Ascend-side is held out (docs/simulator.md).
import type { Calibration } from './types.ts';

export const CALIBRATIONS: Record<'gpu' | 'ascend', Calibration> = {
  gpu: { gemmScale: 0.76, a2aScale: 0.57, layerOverhead: 0 },
  ascend: { gemmScale: 0.57, a2aScale: 1, layerOverhead: 0 },
};

/** Grid for `fitCalibration` (validation.ts). */
export const GEMM_SCALE_GRID = Array.from({ length: 81 }, (_, i) => 0.3 + i * 0.01);
export const A2A_SCALE_GRID = Array.from({ length: 96 }, (_, i) => 0.05 + i * 0.01);
