// Configuration search: architecture variants (layers, hidden, experts, expert size, top-k, heads)
// within a parameter budget × every parallel layout that divides evenly on N devices; layouts that
// do not fit in memory are pruned before their time is computed. Results go to typed-array columns
// (no per-configuration objects), the top N by the objective are materialised at the end.
import type { ModelConfig } from '../model/config.ts';
import { countParams } from '../model/params-count.ts';
import type { DeviceSpec } from '../device/specs.ts';
import { simulate } from './cost-model.ts';
import { forEachLayout } from './layout.ts';
import { memoryBreakdown } from './memory.ts';
import { modelCost } from './model-cost.ts';
import { defaultSchedule } from './schedule.ts';
import type { ParallelLayout, SimOptions } from './types.ts';

export interface ArchSpace {
  hidden: number[];
  layers: number[];
  experts: number[];
  expertSize: number[];
  topk: number[];
  heads: number[];
}

/**
 * The default candidate space around 718B (ranges assumed [U]; pangu-ultra-moe.md §4): hidden ×
 * depth × expert granularity (E experts of size f, top-k) × heads.
 */
export const PAPER_SPACE: ArchSpace = {
  hidden: [6144, 6656, 7168, 7680, 8192],
  layers: [52, 55, 58, 61, 64, 67, 70],
  experts: [64, 128, 256, 512],
  expertSize: [1024, 2048, 4096, 8192],
  topk: [2, 4, 8, 16],
  heads: [96, 128],
};

/** The shape search of the paper: fixed fine-grained experts (256 × 2048, top-8, from its pilot study), hidden × depth. */
export const PAPER_SHAPE_SPACE: ArchSpace = {
  hidden: [6144, 6656, 7168, 7680, 8192],
  layers: Array.from({ length: 21 }, (_, i) => 50 + i),
  experts: [256],
  expertSize: [2048],
  topk: [8],
  heads: [128],
};

export interface SearchInput {
  base: ModelConfig;
  space: ArchSpace;
  /** target total parameters and relative tolerance */
  modelParams: number;
  tolerance: number;
  /** optional activated-parameter window [min, max] */
  activeParams?: [number, number];
  devices: number;
  spec: DeviceSpec;
  seqLen: number;
  globalBatch: number;
  microBatches?: number[];
  vpps?: number[];
  options: SimOptions;
  /** also try full recomputation when the requested policy does not fit */
  fallbackFullRecompute?: boolean;
  objective?: 'mfu' | 'tokens';
  top?: number;
}

export interface Variant {
  hidden: number; layers: number; experts: number; expertSize: number; topk: number; heads: number;
  totalParams: number; activatedParams: number;
}

export interface SearchRow extends Variant {
  tp: number; pp: number; vpp: number; ep: number; cp: number; dp: number; microBatch: number;
  recompute: string;
  mfu: number; tokensPerSecond: number; stepTimeSeconds: number; peakMemoryGiB: number;
}

export interface SearchOutput {
  variants: number;
  /** configurations (variant × layout × recompute policy) evaluated, feasible or not */
  evaluated: number;
  feasible: number;
  seconds: number;
  configsPerSecond: number;
  top: SearchRow[];
  /** every feasible configuration, column-wise */
  columns: Record<string, ArrayLike<number>>;
  variantList: Variant[];
}

export function variantConfig(base: ModelConfig, v: Omit<Variant, 'totalParams' | 'activatedParams'>): ModelConfig {
  return {
    ...base,
    name: `${base.name}:h${v.hidden}-L${v.layers}-E${v.experts}x${v.expertSize}-k${v.topk}-a${v.heads}`,
    hiddenSize: v.hidden, numLayers: v.layers, numHeads: v.heads, numKvHeads: v.heads,
    denseIntermediateSize: Math.round((base.denseIntermediateSize / base.hiddenSize) * v.hidden / 128) * 128,
    moe: { ...base.moe, numExperts: v.experts, expertHiddenSize: v.expertSize, topk: v.topk, numGroups: null, groupTopk: null },
  };
}

/** Architecture variants inside the budget (and the activated window, if given). */
export function enumerateVariants(inp: SearchInput): Array<{ v: Variant; cfg: ModelConfig }> {
  const out: Array<{ v: Variant; cfg: ModelConfig }> = [];
  const s = inp.space;
  for (const hidden of s.hidden) for (const layers of s.layers) for (const experts of s.experts)
    for (const expertSize of s.expertSize) for (const topk of s.topk) for (const heads of s.heads) {
      if (topk > experts) continue;
      const cfg = variantConfig(inp.base, { hidden, layers, experts, expertSize, topk, heads });
      const pc = countParams(cfg);
      if (Math.abs(pc.total / inp.modelParams - 1) > inp.tolerance) continue;
      if (inp.activeParams && (pc.activated < inp.activeParams[0] || pc.activated > inp.activeParams[1])) continue;
      out.push({ v: { hidden, layers, experts, expertSize, topk, heads, totalParams: pc.total, activatedParams: pc.activated }, cfg });
    }
  return out;
}

class Columns {
  n = 0;
  cap = 1024;
  cols: Record<string, Float64Array> = {};
  constructor(readonly names: string[]) { for (const k of names) this.cols[k] = new Float64Array(this.cap); }
  push(vals: number[]): void {
    if (this.n === this.cap) {
      this.cap *= 2;
      for (const k of this.names) { const a = new Float64Array(this.cap); a.set(this.cols[k]); this.cols[k] = a; }
    }
    for (let i = 0; i < this.names.length; i++) this.cols[this.names[i]][this.n] = vals[i];
    this.n++;
  }
  view(): Record<string, Float64Array> {
    const o: Record<string, Float64Array> = {};
    for (const k of this.names) o[k] = this.cols[k].subarray(0, this.n);
    return o;
  }
}

const COLS = ['variant', 'tp', 'pp', 'vpp', 'ep', 'cp', 'dp', 'microBatch', 'fullRecompute', 'mfu', 'tokensPerSecond', 'stepTimeSeconds', 'peakMemoryBytes'];

export function runSearch(inp: SearchInput): SearchOutput {
  const t0 = performance.now();
  const variants = enumerateVariants(inp);
  const cols = new Columns(COLS);
  const row = new Array<number>(COLS.length).fill(0);
  const full: SimOptions = { ...inp.options, recompute: 'full' };
  const policies = inp.options.recompute !== 'full' && inp.fallbackFullRecompute !== false ? [inp.options, full] : [inp.options];
  let evaluated = 0;
  variants.forEach(({ cfg }, vi) => {
    const mc = modelCost(cfg, inp.seqLen, inp.options.causalFlops, inp.options.gatedMlp);
    forEachLayout(cfg, inp.devices, inp.spec, { seqLen: inp.seqLen, globalBatch: inp.globalBatch, microBatches: inp.microBatches, vpps: inp.vpps }, (l: ParallelLayout) => {
      const m = l.globalBatch / (l.dp * l.microBatch);
      for (let pi = 0; pi < policies.length; pi++) {
        const o = policies[pi];
        evaluated++;
        // prune: memory first (cheap, FLOPs-balanced stage split), time only for layouts that fit
        const mem = memoryBreakdown(mc, l, o, inp.spec, o.schedule ?? defaultSchedule(l.pp, l.vpp), m);
        if (!mem.fits) continue;
        const r = simulate(mc, l, o, inp.spec);
        if (!r.memory.fits) continue; // the time-balanced stage split can put more layers on the first stage
        row[0] = vi; row[1] = l.tp; row[2] = l.pp; row[3] = l.vpp; row[4] = l.ep; row[5] = l.cp; row[6] = l.dp; row[7] = l.microBatch;
        row[8] = o.recompute === 'full' ? 1 : 0; row[9] = r.mfu; row[10] = r.tokensPerSecond; row[11] = r.stepTimeSeconds; row[12] = r.peakMemoryBytes;
        cols.push(row);
        break; // the first policy that fits is the cheapest one
      }
    });
  });
  const seconds = (performance.now() - t0) / 1000;
  const c = cols.view();
  const key = (inp.objective ?? 'mfu') === 'mfu' ? c.mfu : c.tokensPerSecond;
  const idx = Array.from({ length: cols.n }, (_, i) => i).sort((a, b) => key[b] - key[a]).slice(0, inp.top ?? 10);
  const top: SearchRow[] = idx.map((i) => {
    const v = variants[c.variant[i]].v;
    return {
      ...v, tp: c.tp[i], pp: c.pp[i], vpp: c.vpp[i], ep: c.ep[i], cp: c.cp[i], dp: c.dp[i], microBatch: c.microBatch[i],
      recompute: c.fullRecompute[i] ? 'full' : inp.options.recompute,
      mfu: c.mfu[i], tokensPerSecond: c.tokensPerSecond[i], stepTimeSeconds: c.stepTimeSeconds[i], peakMemoryGiB: c.peakMemoryBytes[i] / 2 ** 30,
    };
  });
  return {
    variants: variants.length, evaluated, feasible: cols.n, seconds, configsPerSecond: evaluated / Math.max(seconds, 1e-9),
    top, columns: c, variantList: variants.map((x) => x.v),
  };
}

/** Best configuration per architecture variant (for ranking shapes), sorted by the objective; `filter` keeps only some rows (layouts). */
export function bestPerVariant(out: SearchOutput, objective: 'mfu' | 'tokens' = 'mfu', filter?: (row: number) => boolean): Array<{ variant: Variant; mfu: number; tokensPerSecond: number; row: number }> {
  const c = out.columns;
  const best = new Map<number, number>();
  const key = objective === 'mfu' ? c.mfu : c.tokensPerSecond;
  for (let i = 0; i < c.mfu.length; i++) {
    if (filter && !filter(i)) continue;
    const v = c.variant[i], b = best.get(v);
    if (b === undefined || key[i] > key[b]) best.set(v, i);
  }
  return [...best.entries()].map(([v, i]) => ({ variant: out.variantList[v], mfu: c.mfu[i], tokensPerSecond: c.tokensPerSecond[i], row: i }))
    .sort((a, b) => (objective === 'mfu' ? b.mfu - a.mfu : b.tokensPerSecond - a.tokensPerSecond));
}
