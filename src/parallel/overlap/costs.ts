// Per-(micro-batch, layer, EP rank) op durations of a MoE layer for the overlap executor, from a
// top-k routing sampled on the host and the pure cost model (src/device/cost.ts). Pure: no tfjs.
//
// Routing: every EP rank routes its `tokens` tokens to `topk` distinct experts drawn from a Zipf
// popularity over `experts` experts (zipf 0 = uniform); experts are split contiguously over EP ranks.
// The dispatch is the paper's hierarchical a2a (§6.1, MindSpeed allgather mode): inter-node all-gather
// of each rank's tokens to the same-local-rank peer on the other nodes, then an intra-node a2a(v);
// volumes come from planHierarchicalAllToAll. Combine moves the same rows back (same volume), and the
// backward of each a2a is the reverse a2a with the same volume.
import { computeTime, gemmTime, hierarchicalAllToAllTime } from '../../device/cost.ts';
import { planHierarchicalAllToAll, type RankDispatch } from '../../device/a2a-plan.ts';
import { DTYPE_BYTES, type DeviceSpec } from '../../device/specs.ts';
import type { MoELayerTimes } from '../pipeline/overlap.ts';
import { rng } from '../placement/trace.ts'; // the same seeded PRNG as the synthetic load traces

export interface OverlapLayerShape {
  /** tokens of one micro-batch on one EP rank */
  tokens: number;
  hidden: number;
  experts: number;
  topk: number;
  expertFfn: number;
  sharedFfn: number;
  /** attention forward FLOPs per token on this rank (projections + core) */
  attnFlopsPerToken: number;
}

export interface RoutingSpec { zipf: number; seed: number }

/** Durations of one layer, one micro-batch; compute per EP rank (index = position in the EP group). */
export interface LayerCost {
  attnF: number; attnB: number; attnW: number;
  sharedF: number; sharedB: number;
  mlpF: number[]; mlpB: number[]; mlpW: number[];
  /** rows each EP rank's experts receive */
  rows: number[];
  dispatch: { intra: number; inter: number };
  combine: { intra: number; inter: number };
}


/** Cumulative Zipf popularity over experts in a seeded random order (hot experts spread over ranks). */
function popularity(experts: number, zipf: number, rand: () => number): Float64Array {
  const perm = Array.from({ length: experts }, (_, i) => i);
  for (let i = experts - 1; i > 0; i--) { const j = Math.floor(rand() * (i + 1)); [perm[i], perm[j]] = [perm[j], perm[i]]; }
  const w = new Float64Array(experts);
  for (let r = 0; r < experts; r++) w[perm[r]] = 1 / Math.pow(r + 1, zipf);
  const cdf = new Float64Array(experts);
  let s = 0;
  for (let e = 0; e < experts; e++) { s += w[e]; cdf[e] = s; }
  for (let e = 0; e < experts; e++) cdf[e] /= s;
  return cdf;
}

function sampleExpert(cdf: Float64Array, u: number): number {
  let lo = 0, hi = cdf.length - 1;
  while (lo < hi) { const mid = (lo + hi) >> 1; if (cdf[mid] < u) lo = mid + 1; else hi = mid; }
  return lo;
}

/** One rank's dispatch: rows (token copies) sorted by destination EP rank. */
function routeRank(s: OverlapLayerShape, ep: number, cdf: Float64Array, rand: () => number): RankDispatch {
  const perRank = s.experts / ep;
  const byDest: number[][] = Array.from({ length: ep }, () => []);
  const chosen = new Set<number>();
  for (let t = 0; t < s.tokens; t++) {
    chosen.clear();
    while (chosen.size < s.topk) chosen.add(sampleExpert(cdf, rand()));
    for (const e of chosen) byDest[Math.floor(e / perRank)].push(t);
  }
  const rowToken: number[] = [], rowDest: number[] = [];
  byDest.forEach((toks, d) => { for (const t of toks) { rowToken.push(t); rowDest.push(d); } });
  return { numTokens: s.tokens, rowToken, rowDest };
}

/**
 * Costs of every (micro-batch, layer) of one pipeline stage's EP group. `nodeOf[i]` = node of EP rank
 * i. Expert compute is one grouped GEMM per rank charged as [rows, 3·ffn] × [ffn-equivalent h]
 * (SwiGLU: gate+up and down = 6·rows·h·f FLOPs); backward = dX and dW, each the forward's cost.
 */
export function layerCosts(
  s: OverlapLayerShape, spec: DeviceSpec, nodeOf: readonly number[], microBatches: number, layers: number, routing: RoutingSpec,
): LayerCost[][] {
  const ep = nodeOf.length, beta = DTYPE_BYTES.bf16;
  if (s.experts % ep !== 0) throw new Error(`experts ${s.experts} not divisible by EP ${ep}`);
  const nodes = new Set(nodeOf).size, perNode = ep / nodes;
  const rand = rng(routing.seed);
  const attnF = computeTime(s.tokens * s.attnFlopsPerToken, spec);
  const sharedF = gemmTime(s.tokens, 3 * s.sharedFfn, s.hidden, spec);
  const out: LayerCost[][] = [];
  for (let m = 0; m < microBatches; m++) {
    const row: LayerCost[] = [];
    for (let l = 0; l < layers; l++) {
      const cdf = popularity(s.experts, routing.zipf, rand);
      const dispatch = Array.from({ length: ep }, () => routeRank(s, ep, cdf, rand));
      const plan = planHierarchicalAllToAll(nodeOf, dispatch, 'allgather');
      const a2a = hierarchicalAllToAllTime(plan.phase1MaxRows * s.hidden * beta, plan.phase2MaxRows * s.hidden * beta, nodes, perNode, spec.intraNode, spec.interNode);
      const rows = Array.from({ length: ep }, (_, d) => plan.splits.reduce((acc, r) => acc + r[d], 0));
      const mlp = rows.map((r) => gemmTime(r, 3 * s.expertFfn, s.hidden, spec));
      row.push({
        attnF, attnB: attnF, attnW: attnF, sharedF, sharedB: 2 * sharedF,
        mlpF: mlp, mlpB: mlp, mlpW: mlp, rows,
        dispatch: { intra: a2a.intraNode, inter: a2a.interNode }, combine: { intra: a2a.intraNode, inter: a2a.interNode },
      });
    }
    out.push(row);
  }
  return out;
}

/** Mean over micro-batches and layers (expert compute: the slowest EP rank), in the pure model's terms. */
export function meanLayerTimes(costs: LayerCost[][]): MoELayerTimes {
  const all = costs.flat();
  const mean = (f: (c: LayerCost) => number) => all.reduce((a, c) => a + f(c), 0) / all.length;
  const mx = (xs: number[]) => Math.max(...xs);
  return {
    attnF: mean((c) => c.attnF), attnB: mean((c) => c.attnB), attnW: mean((c) => c.attnW),
    mlpF: mean((c) => mx(c.mlpF)), mlpB: mean((c) => mx(c.mlpB)), mlpW: mean((c) => mx(c.mlpW)),
    sharedF: mean((c) => c.sharedF), sharedB: mean((c) => c.sharedB),
    dispatch: { intra: mean((c) => c.dispatch.intra), inter: mean((c) => c.dispatch.inter) },
    combine: { intra: mean((c) => c.combine.intra), inter: mean((c) => c.combine.inter) },
  };
}
