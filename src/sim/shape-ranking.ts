// The paper's shape search (Pangu Ultra MoE, arXiv 2505.04519): rank the candidate shapes (256 × 2048 experts,
// top-8, hidden × depth within 718B ± 5%) by the best MFU over every layout on 6144 NPUs with the optimised
// system, and say whether the paper's choice (hidden 7680, 61 layers) is "near the top".
//
// "Near the top" is defined against the simulator's own accuracy: a shape is near the top when its best MFU is
// within the held-out mean |error| of the validation (relative) of the best shape's, i.e. the simulator cannot
// tell it from the top shape. The band is computed from the validation rows, not chosen.
//
// Views (`RankingView`): 'mfu' (primary): best MFU per shape over every layout, the paper's objective with its
// simulator searching the parallelism per candidate (pangu-ultra-moe.md §4); 'tokens': best tokens/s per shape
// scaled to 718B total parameters (tokens/s × P / 718B), i.e. the time to train equal-size models on equal
// tokens, which does not credit the attention FLOPs a shape spends; 'paper-layout': best MFU per shape over the
// paper's reported layout family only (TP8 PP16 VPP2 EP32, any micro-batch; pangu-ultra-moe.md §5 [U]).
import { getSpec, type DeviceSpec } from '../device/specs.ts';
import { PAPER_DEVICE, PAPER_GLOBAL_BATCH, PAPER_MODEL, PAPER_OPTIMISED_OPTIONS, PAPER_SEQ } from './paper.ts';
import { bestPerVariant, PAPER_SHAPE_SPACE, runSearch } from './search.ts';
import { meanAbsError, validationRows } from './validation.ts';
import type { SimOptions } from './types.ts';

export const PAPER_SHAPE = { hidden: 7680, layers: 61 };

export type RankingView = 'mfu' | 'tokens' | 'paper-layout';
export const PAPER_LAYOUT_FAMILY = { tp: 8, pp: 16, vpp: 2, ep: 32 };
/** Budget the 'tokens' view scales to. */
export const RANKING_BUDGET = 718e9;

export interface RankedShape {
  hidden: number;
  layers: number;
  totalParams: number;
  mfu: number;
  tokensPerSecond: number;
  /** the ranking metric of the view: MFU, or tokens/s × totalParams / 718B */
  score: number;
  /** best layout, e.g. "TP4 PP4 VPP4 EP32 DP384 mb1" */
  layout: string;
}

export interface ShapeRanking {
  view: RankingView;
  ranked: RankedShape[];
  /** 1-based rank of the paper's shape */
  paperRank: number;
  /** MFU points (×100; tokens/s in the 'tokens' view) and relative gap of the paper's shape below the best */
  paperGapPoints: number;
  paperGapRelative: number;
  /** relative band: the simulator's held-out mean |error| */
  band: number;
  /** shapes whose best MFU is within the band of the best */
  withinBand: number;
  nearTop: boolean;
  evaluated: number;
  configsPerSecond: number;
}

/** Held-out mean |error| of the validation against published runs (docs/simulator.md). */
export function simulatorErrorBand(): number {
  return meanAbsError(validationRows().filter((r) => r.role === 'holdout'));
}

export function paperShapeRanking(opts: { seqLen?: number; globalBatch?: number; band?: number; view?: RankingView; options?: SimOptions; spec?: DeviceSpec } = {}): ShapeRanking {
  const seqLen = opts.seqLen ?? PAPER_SEQ;
  const globalBatch = opts.globalBatch ?? (PAPER_GLOBAL_BATCH * PAPER_SEQ) / seqLen;
  const view = opts.view ?? 'mfu';
  const out = runSearch({
    base: PAPER_MODEL, space: PAPER_SHAPE_SPACE, modelParams: 718e9, tolerance: 0.05, devices: 6144,
    spec: opts.spec ?? getSpec(PAPER_DEVICE), seqLen, globalBatch, options: opts.options ?? PAPER_OPTIMISED_OPTIONS, top: 1,
  });
  const c = out.columns, f = PAPER_LAYOUT_FAMILY;
  const filter = view === 'paper-layout' ? (i: number) => c.tp[i] === f.tp && c.pp[i] === f.pp && c.vpp[i] === f.vpp && c.ep[i] === f.ep : undefined;
  const ranked: RankedShape[] = bestPerVariant(out, view === 'tokens' ? 'tokens' : 'mfu', filter).map((x) => ({
    hidden: x.variant.hidden, layers: x.variant.layers, totalParams: x.variant.totalParams, mfu: x.mfu, tokensPerSecond: x.tokensPerSecond,
    score: view === 'tokens' ? x.tokensPerSecond * x.variant.totalParams / RANKING_BUDGET : x.mfu,
    layout: `TP${c.tp[x.row]} PP${c.pp[x.row]} VPP${c.vpp[x.row]} EP${c.ep[x.row]} DP${c.dp[x.row]} mb${c.microBatch[x.row]}`,
  })).sort((a, b) => b.score - a.score);
  const i = ranked.findIndex((x) => x.hidden === PAPER_SHAPE.hidden && x.layers === PAPER_SHAPE.layers);
  if (i < 0) throw new Error('the paper shape has no feasible layout');
  const band = opts.band ?? simulatorErrorBand();
  const best = ranked[0].score;
  const gapRel = 1 - ranked[i].score / best;
  return {
    view, ranked, paperRank: i + 1, paperGapPoints: (view === 'tokens' ? 1 : 100) * (best - ranked[i].score), paperGapRelative: gapRel, band,
    withinBand: ranked.filter((x) => 1 - x.score / best <= band).length, nearTop: gapRel <= band,
    evaluated: out.evaluated, configsPerSecond: out.configsPerSecond,
  };
}
