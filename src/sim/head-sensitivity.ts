// How the paper's depth choice depends on the cost of the output heads.
//
// Pangu's two output heads (main + MTP logits over a 153,600-token vocabulary) sit on the last pipeline stage.
// At the paper's layout (TP8 PP16 VPP2, 4 layers per stage) whether 61 layers + the MTP layer + the heads fit
// the 16 stages decides the ranking of 59-63-layer shapes (docs/simulator.md, "Shape search").
//
// Two pure checks, both from the paper's own simulation study as reported in a digest of the PDF (docs/simulator.md):
// - `paperDepthComparison`: the chosen 61-layer model ("model 7") ran ~15% faster than a 66-layer variant;
// - `headCostSensitivity`: if the heads' vocabulary GEMMs ran nearer the measured GEMM curve than the layers'
//   kernels (`Calibration.headGemmScale` above the fitted `gemmScale`), the 61-layer pipeline would balance and the
//   paper's shape would rank first; each row refits the calibration on the paper's two MFU endpoints, so the row
//   also shows whether such a head cost is compatible with the published 18.9% / 30.0%.
import { getSpec } from '../device/specs.ts';
import { simulate } from './cost-model.ts';
import { modelCost } from './model-cost.ts';
import { PAPER_DEVICE, PAPER_GLOBAL_BATCH, PAPER_MODEL, PAPER_OPTIMISED_OPTIONS, PAPER_SEQ, paperLayout } from './paper.ts';
import { bestPerVariant, enumerateVariants, PAPER_SHAPE_SPACE, runSearch, type SearchInput } from './search.ts';
import { paperShapeRanking, PAPER_SHAPE } from './shape-ranking.ts';
import { CALIBRATIONS } from './calibration.ts';
import { fitAscendCalibration, paperRows } from './validation.ts';
import type { Calibration } from './types.ts';

/** The paper's reported throughput advantage of its 61-layer model over a 66-layer variant [S]. */
export const PAPER_DEPTH_ADVANTAGE = 0.15;

export interface DepthComparison {
  /**
   * the 66-layer shapes within 718B ± 5% and how much faster (tokens/s) the paper's shape is than each: both at the
   * paper's layout (`advantage`), and each at its own fastest layout on 6144 NPUs (`advantageBestLayouts`; the digest
   * does not say which layouts the paper compared)
   */
  rivals: Array<{ hidden: number; layers: number; totalParams: number; advantage: number; advantageBestLayouts: number }>;
}

const variantsAt = (layers: number[]) => enumerateVariants({
  base: PAPER_MODEL, space: { ...PAPER_SHAPE_SPACE, layers }, modelParams: 718e9, tolerance: 0.05,
} as SearchInput);

/** Tokens/s of 7680 × 61 over each 66-layer shape in the budget, at the paper's layout and at each one's best layout. */
export function paperDepthComparison(calibration: Calibration = CALIBRATIONS.ascend): DepthComparison {
  const spec = getSpec(PAPER_DEVICE), layout = paperLayout(6144), options = { ...PAPER_OPTIMISED_OPTIONS, calibration };
  const tps = (cfg: Parameters<typeof modelCost>[0]) => simulate(modelCost(cfg, PAPER_SEQ, false), layout, options, spec).tokensPerSecond;
  const paper = variantsAt([PAPER_SHAPE.layers]).find((x) => x.v.hidden === PAPER_SHAPE.hidden)!;
  const base = tps(paper.cfg);
  const out = runSearch({
    base: PAPER_MODEL, space: { ...PAPER_SHAPE_SPACE, layers: [PAPER_SHAPE.layers, 66] }, modelParams: 718e9, tolerance: 0.05,
    devices: 6144, spec, seqLen: PAPER_SEQ, globalBatch: PAPER_GLOBAL_BATCH, options, top: 1, objective: 'tokens',
  });
  const best = new Map(bestPerVariant(out, 'tokens').map((x) => [`${x.variant.hidden}x${x.variant.layers}`, x.tokensPerSecond]));
  const bestPaper = best.get(`${PAPER_SHAPE.hidden}x${PAPER_SHAPE.layers}`)!;
  return {
    rivals: variantsAt([66]).map(({ v, cfg }) => ({
      hidden: v.hidden, layers: v.layers, totalParams: v.totalParams, advantage: base / tps(cfg) - 1,
      advantageBestLayouts: bestPaper / best.get(`${v.hidden}x${v.layers}`)! - 1,
    })),
  };
}

export interface HeadCostRow {
  /** `headGemmScale`; null = the fitted gemmScale (the default model) */
  headGemmScale: number | null;
  calibration: Calibration;
  /** simulated baseline and optimised MFU after the refit, and the mean relative error of the fit */
  baselineMfu: number;
  optimisedMfu: number;
  fitError: number;
  /** both endpoints within 2 MFU points (the check) */
  endpointsWithin2Points: boolean;
  /** heads' time in layers at the paper's layout, and the layers on its heaviest stage (layer-equivalents) */
  headLayerEquivalents: number;
  heaviestStage: number;
  /** rank of 7680 × 61 (of 23) over every layout and within the paper's layout family, seq 4096 */
  rankAnyLayout: number;
  rankPaperLayout: number;
  /** tokens/s advantage of 7680 × 61 over the 66-layer shape(s) at the paper's layout, and at each one's best layout (min) */
  depthAdvantage: number;
  depthAdvantageBestLayouts: number;
}

export function headCostSensitivity(scales: Array<number | null>): HeadCostRow[] {
  const spec = getSpec(PAPER_DEVICE);
  return scales.map((s) => {
    const { calibration, fitError } = s === null ? { calibration: CALIBRATIONS.ascend, fitError: NaN } : fitAscendCalibration({ headGemmScale: s });
    const rows = paperRows(calibration);
    const err = s === null ? rows.reduce((a, r) => a + Math.abs(r.error), 0) / rows.length : fitError;
    const options = { ...PAPER_OPTIMISED_OPTIONS, calibration };
    const r = simulate(modelCost(PAPER_MODEL, PAPER_SEQ, false), paperLayout(6144), options, spec);
    const heaviest = Math.max(r.stages.perStage, r.stages.lastStage + r.stages.headLayerEquivalents);
    const { rivals } = paperDepthComparison(calibration);
    return {
      headGemmScale: s, calibration, baselineMfu: rows[0].predicted, optimisedMfu: rows[1].predicted, fitError: err,
      endpointsWithin2Points: rows.every((x) => Math.abs(x.predicted - x.measured) <= 0.02),
      headLayerEquivalents: r.stages.headLayerEquivalents, heaviestStage: heaviest,
      rankAnyLayout: paperShapeRanking({ options }).paperRank,
      rankPaperLayout: paperShapeRanking({ options, view: 'paper-layout' }).paperRank,
      depthAdvantage: Math.min(...rivals.map((x) => x.advantage)),
      depthAdvantageBestLayouts: Math.min(...rivals.map((x) => x.advantageBestLayouts)),
    };
  });
}
