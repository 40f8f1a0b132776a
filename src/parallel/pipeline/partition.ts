// Stage partitioning: contiguous layers → pp·vpp model chunks balanced by cost, with no-op padding.
//
// Model chunk c (0 ≤ c < pp·vpp, in model order) runs on rank c mod pp as its virtual chunk
// ⌊c / pp⌋ (Megatron's interleaved assignment). The first chunk also carries the embedding, the
// last one the LM head, so the balancer gives them fewer real layers.
//
// Padding (`padTo`): the paper pads 61 layers to 64 slots (DeepSeek-V3 in MindSpeed-LLM:
// `--noop-layers 61,62,63`) so that every chunk has the same number of layer *slots*; a chunk
// with fewer real layers fills the rest with no-op layers (cost `padCost`, default 0). This keeps
// the per-chunk program identical, which interleaved pipelining wants. With fewer layers than chunks
// (and no `padTo` / `minLayersPerChunk` given) the model is padded to one slot per chunk: e.g. 4
// layers on pp=4 × vpp=2 gives 4 chunks of one layer and 4 of one no-op slot. With at least as many
// layers as chunks the default is unchanged (no padding, ≥ 1 layer per chunk).
//
// Balancing is optimal: a DP over (chunk, prefix) minimises the maximum chunk cost; among
// optimal answers it prefers the one with the smallest sum of squared chunk costs (flatter).

export interface PartitionOptions {
  /** Total slot count (≥ layers, divisible by pp·vpp). Omit for no padding. */
  padTo?: number;
  /** Cost of one no-op padding slot (0 by default). */
  padCost?: number;
  /** Cost added to the first chunk (embedding lookup) and to the last (head + loss). */
  embeddingCost?: number;
  headCost?: number;
  /** Minimum real layers per chunk (default 1 without padding, 0 with padding; giving it disables the automatic padding of fewer layers than chunks). */
  minLayersPerChunk?: number;
}

export interface ModelChunk {
  /** Model-order index c = virtual·pp + stage. */
  index: number;
  /** Pipeline rank holding it, and its virtual-chunk id on that rank. */
  stage: number;
  virtual: number;
  /** Real layers [start, end). */
  start: number;
  end: number;
  /** Layer index per slot, `null` for a no-op padding slot (padding goes last in the chunk). */
  slots: (number | null)[];
  /** Sum of layer costs + padding + embedding/head if attached here. */
  cost: number;
}

export interface StagePlan {
  stage: number;
  /** This rank's chunks in virtual order. */
  chunks: ModelChunk[];
  cost: number;
}

export interface Partition {
  pp: number;
  vpp: number;
  chunks: ModelChunk[];
  stages: StagePlan[];
  /** Slots per chunk (equal for all chunks when padded). */
  slotsPerChunk: number | null;
  maxChunkCost: number;
  /** max / mean chunk cost (1 = perfect balance). */
  imbalance: number;
  /** stageOfLayer[l] = rank holding layer l. */
  stageOfLayer: number[];
}

export function partitionLayers(layerCosts: number[], pp: number, vpp = 1, opts: PartitionOptions = {}): Partition {
  const L = layerCosts.length;
  const C = pp * vpp;
  if (!(Number.isInteger(pp) && pp >= 1 && Number.isInteger(vpp) && vpp >= 1)) throw new Error(`pp and vpp must be positive integers (got ${pp}, ${vpp})`);
  if (layerCosts.some((c) => !(c >= 0))) throw new Error('layer costs must be >= 0');
  let cap = Infinity;
  const padCost = opts.padCost ?? 0;
  // Fewer layers than chunks and no explicit padding or minimum: pad to one slot per chunk, so some
  // chunks hold only a no-op slot (they pass their activation through; sends/recvs still happen).
  const padTo = opts.padTo ?? (L < C && opts.minLayersPerChunk === undefined ? C : undefined);
  if (padTo !== undefined) {
    if (padTo < L || padTo % C !== 0) throw new Error(`padTo=${padTo} must be >= layers (${L}) and divisible by pp·vpp=${C}`);
    cap = padTo / C;
  }
  const minLayers = opts.minLayersPerChunk ?? (padTo !== undefined ? 0 : 1);
  if (minLayers * C > L) throw new Error(`${L} layers cannot give ${C} chunks at least ${minLayers} layer(s) each`);
  const prefix = [0];
  for (const c of layerCosts) prefix.push(prefix[prefix.length - 1] + c);
  const extra = (c: number) => (c === 0 ? opts.embeddingCost ?? 0 : 0) + (c === C - 1 ? opts.headCost ?? 0 : 0);
  const chunkCost = (c: number, i: number, j: number) =>
    prefix[j] - prefix[i] + extra(c) + (Number.isFinite(cap) ? (cap - (j - i)) * padCost : 0);

  // best[c][j]: [max, sumSq] of the best split of layers [0, j) into chunks 0..c; arg[c][j] = start of chunk c.
  const best: [number, number][][] = [];
  const arg: number[][] = [];
  for (let c = 0; c < C; c++) {
    best.push(new Array(L + 1).fill([Infinity, Infinity]));
    arg.push(new Array(L + 1).fill(-1));
    for (let j = 0; j <= L; j++) {
      for (let i = 0; i <= (c === 0 ? 0 : j); i++) {
        const n = j - i;
        if (n < minLayers || n > cap) continue;
        const prev: [number, number] = c === 0 ? [0, 0] : best[c - 1][i];
        if (!Number.isFinite(prev[0])) continue;
        const k = chunkCost(c, i, j);
        const cand: [number, number] = [Math.max(prev[0], k), prev[1] + k * k];
        const cur = best[c][j];
        // Tolerant compare so float noise does not pick a lumpier split.
        const eps = 1e-9 * Math.max(1, cand[0]);
        if (cand[0] < cur[0] - eps || (Math.abs(cand[0] - cur[0]) <= eps && cand[1] < cur[1] - eps)) {
          best[c][j] = cand;
          arg[c][j] = i;
        }
      }
    }
  }
  if (!Number.isFinite(best[C - 1][L][0])) throw new Error(`no feasible partition of ${L} layers into ${C} chunks`);

  const bounds: [number, number][] = new Array(C);
  let j = L;
  for (let c = C - 1; c >= 0; c--) { const i = arg[c][j]; bounds[c] = [i, j]; j = i; }

  const chunks: ModelChunk[] = bounds.map(([s, e], c) => {
    const slots: (number | null)[] = [];
    for (let l = s; l < e; l++) slots.push(l);
    if (Number.isFinite(cap)) while (slots.length < cap) slots.push(null);
    return { index: c, stage: c % pp, virtual: Math.floor(c / pp), start: s, end: e, slots, cost: chunkCost(c, s, e) };
  });
  const stages: StagePlan[] = [];
  for (let r = 0; r < pp; r++) {
    const mine = chunks.filter((ch) => ch.stage === r);
    stages.push({ stage: r, chunks: mine, cost: mine.reduce((a, ch) => a + ch.cost, 0) });
  }
  const stageOfLayer = new Array<number>(L);
  for (const ch of chunks) for (let l = ch.start; l < ch.end; l++) stageOfLayer[l] = ch.stage;
  const maxChunkCost = Math.max(...chunks.map((ch) => ch.cost));
  const mean = chunks.reduce((a, ch) => a + ch.cost, 0) / C;
  return {
    pp, vpp, chunks, stages, slotsPerChunk: Number.isFinite(cap) ? cap : null,
    maxChunkCost, imbalance: mean > 0 ? maxChunkCost / mean : 1, stageOfLayer,
  };
}

/** The slot list of the whole model in model order (length padTo): layer index or null (no-op). */
export function slotTable(p: Partition): (number | null)[] {
  return p.chunks.flatMap((ch) => ch.slots);
}
