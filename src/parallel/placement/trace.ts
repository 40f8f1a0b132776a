// Expert-load traces: tokens per expert per MoE layer per training step, as recorded from a run (feed
// the router's `tokensPerExpert` of every layer at every step) or generated synthetically (Zipf skew with
// drift). The on-disk format is one JSON object, see `ExpertLoadTrace`; files go in bench/traces/.
import { PlacementError } from './types.ts';

export const TRACE_FORMAT = 'ultramoe.expert-load-trace';

export interface ExpertLoadTrace {
  format: typeof TRACE_FORMAT;
  version: 1;
  name: string;
  numLayers: number; // L MoE layers
  numExperts: number; // N routed experts per layer
  topK?: number; // router top-k, informative
  tokensPerStep?: number; // tokens routed per step per layer, informative
  steps: number[][][]; // [S][L][N] tokens routed to each expert
  meta?: Record<string, unknown>; // how it was produced (generator parameters, run id, ...)
}

/** Validate a parsed JSON value as a trace; throws one PlacementError listing every problem. */
export function parseTrace(json: unknown): ExpertLoadTrace {
  const p: string[] = [];
  const t = json as Partial<ExpertLoadTrace>;
  if (typeof json !== 'object' || json === null) throw new PlacementError(['trace must be a JSON object']);
  if (t.format !== TRACE_FORMAT) p.push(`format must be '${TRACE_FORMAT}' (got ${JSON.stringify(t.format)})`);
  if (t.version !== 1) p.push(`version must be 1 (got ${JSON.stringify(t.version)})`);
  if (typeof t.name !== 'string') p.push('name must be a string');
  for (const k of ['numLayers', 'numExperts'] as const) {
    if (!Number.isInteger(t[k]) || (t[k] as number) <= 0) p.push(`${k} must be a positive integer (got ${t[k]})`);
  }
  if (!Array.isArray(t.steps) || t.steps.length === 0) p.push('steps must be a non-empty [S][L][N] array');
  else if (!p.length) {
    t.steps.forEach((step, s) => {
      if (!Array.isArray(step) || step.length !== t.numLayers) { p.push(`steps[${s}] must have ${t.numLayers} layer rows`); return; }
      step.forEach((row, l) => {
        if (!Array.isArray(row) || row.length !== t.numExperts) p.push(`steps[${s}][${l}] must have ${t.numExperts} entries`);
        else if (row.some((v) => typeof v !== 'number' || !Number.isFinite(v) || v < 0)) p.push(`steps[${s}][${l}] has a negative or non-numeric load`);
      });
    });
  }
  if (p.length) throw new PlacementError(p.slice(0, 20).concat(p.length > 20 ? [`... and ${p.length - 20} more`] : []));
  return t as ExpertLoadTrace;
}

/** mulberry32: small, fast, seedable; enough for synthetic traces. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function gaussian(rand: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

/**
 * Zipf shares p_r ∝ 1/(r+1)^s over ranks r, capped at 1/topK (a token picks k distinct experts, so no
 * expert can receive more than one k-th of the assignments); the excess is redistributed.
 */
export function zipfShares(n: number, exponent: number, topK = 1): number[] {
  const w = Array.from({ length: n }, (_, r) => 1 / (r + 1) ** exponent);
  const cap = 1 / topK;
  const capped = new Array<boolean>(n).fill(false);
  for (;;) {
    let freeMass = 0, fixed = 0;
    for (let r = 0; r < n; r++) capped[r] ? (fixed += cap) : (freeMass += w[r]);
    const scale = (1 - fixed) / freeMass;
    let changed = false;
    for (let r = 0; r < n; r++) if (!capped[r] && w[r] * scale > cap) { capped[r] = true; changed = true; }
    if (!changed) return w.map((x, r) => (capped[r] ? cap : x * scale));
  }
}

export interface ZipfTraceOptions {
  numLayers: number;
  numExperts: number;
  steps: number;
  exponent: number; // Zipf skew s (0.5 mild, 1.0 typical, 1.5 heavy)
  tokensPerStep?: number; // default 4096
  topK?: number; // default 8
  drift?: number; // rank swaps per layer per step (hot experts change over time); default 0.5
  driftReach?: number; // max rank distance of a swap; default 16
  seed?: number; // default 1
  name?: string;
}

/**
 * Synthetic skewed trace. Each layer has its own random ranking of experts (hot experts at random ids);
 * drift swaps ranks r and r + 1..driftReach at random, so hot experts cool down and others heat up;
 * counts are the multinomial means tokensPerStep·topK·p plus Gaussian sampling noise.
 */
export function syntheticZipfTrace(o: ZipfTraceOptions): ExpertLoadTrace {
  const tokens = o.tokensPerStep ?? 4096, topK = o.topK ?? 8, drift = o.drift ?? 0.5, reach = o.driftReach ?? 16;
  const seed = o.seed ?? 1;
  const rand = rng(seed);
  const N = o.numExperts;
  const shares = zipfShares(N, o.exponent, topK); // [N] by rank
  const rankToExpert = Array.from({ length: o.numLayers }, () => {
    const perm = Array.from({ length: N }, (_, i) => i);
    for (let i = N - 1; i > 0; i--) { const j = Math.floor(rand() * (i + 1)); [perm[i], perm[j]] = [perm[j], perm[i]]; }
    return perm;
  });
  const total = tokens * topK;
  const steps: number[][][] = [];
  for (let s = 0; s < o.steps; s++) {
    const layers: number[][] = [];
    for (let l = 0; l < o.numLayers; l++) {
      const perm = rankToExpert[l];
      // Poisson-distributed number of swaps with mean `drift`
      let swaps = 0;
      for (let u = rand(), limit = Math.exp(-drift), prod = u; prod > limit; prod *= rand()) swaps++;
      for (let k = 0; k < swaps; k++) {
        const r = Math.floor(rand() * N), r2 = Math.min(N - 1, r + 1 + Math.floor(rand() * reach));
        [perm[r], perm[r2]] = [perm[r2], perm[r]];
      }
      const row = new Array<number>(N).fill(0);
      for (let r = 0; r < N; r++) {
        const mu = total * shares[r];
        row[perm[r]] = Math.max(0, Math.round(mu + Math.sqrt(mu * (1 - shares[r])) * gaussian(rand)));
      }
      layers.push(row);
    }
    steps.push(layers);
  }
  return {
    format: TRACE_FORMAT, version: 1, name: o.name ?? `zipf-${o.exponent}`, numLayers: o.numLayers, numExperts: N,
    topK, tokensPerStep: tokens, steps,
    meta: { generator: 'syntheticZipfTrace', exponent: o.exponent, drift, driftReach: reach, seed },
  };
}

/** [L][N] loads averaged over steps [from, to). */
export function meanLoads(trace: ExpertLoadTrace, from = 0, to = trace.steps.length): number[][] {
  const out = Array.from({ length: trace.numLayers }, () => new Array<number>(trace.numExperts).fill(0));
  for (let s = from; s < to; s++) trace.steps[s].forEach((row, l) => row.forEach((v, e) => { out[l][e] += v / (to - from); }));
  return out;
}
