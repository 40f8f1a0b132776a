// Per-step metrics: expert-load statistics from router stats, this machine's fp32 peak for local
// MFU, memory, and the arquero table they are saved in (metrics.csv, metrics.json).
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import * as aq from 'arquero';
import { tf } from '../backend/tf.ts';
import type { RouterStats } from '../model/module.ts';

export interface ExpertLoad {
  layer: number;
  /** Tokens per expert summed over the global batch's micro-batches. */
  tokensPerExpert: number[];
  maxOverMean: number;
  cv: number;        // std/mean of tokens per expert
  dropRate: number;  // dropped (token, expert) pairs / routed pairs
}

/** Sum router stats per layer across micro-batches and derive balance statistics. */
export function expertLoads(stats: RouterStats[], topk: number): ExpertLoad[] {
  const byLayer = new Map<number, { tpe: Float64Array; tokens: number; dropped: number }>();
  for (const s of stats) {
    let e = byLayer.get(s.layer);
    if (!e) { e = { tpe: new Float64Array(s.tokensPerExpert.length), tokens: 0, dropped: 0 }; byLayer.set(s.layer, e); }
    for (let i = 0; i < s.tokensPerExpert.length; i++) e.tpe[i] += s.tokensPerExpert[i];
    e.tokens += s.numTokens;
    e.dropped += s.droppedAssignments;
  }
  return [...byLayer.entries()].sort((a, b) => a[0] - b[0]).map(([layer, e]) => {
    const n = e.tpe.length;
    let sum = 0, max = 0;
    for (const c of e.tpe) { sum += c; max = Math.max(max, c); }
    const mean = sum / n;
    let v = 0;
    for (const c of e.tpe) v += (c - mean) ** 2;
    return {
      layer,
      tokensPerExpert: Array.from(e.tpe),
      maxOverMean: mean > 0 ? max / mean : 0,
      cv: mean > 0 ? Math.sqrt(v / n) / mean : 0,
      dropRate: e.tokens > 0 ? e.dropped / (e.tokens * topk) : 0,
    };
  });
}

export interface MachinePeak { cores: number; ghz: number; lanes: number; flops: number; source: string }

/** fp32 peak = cores × 2 FMA pipes × SIMD lanes × 2 flops × clock (the clock from /proc/cpuinfo or os.cpus()). */
export function machinePeak(): MachinePeak {
  const cs = cpus();
  const cores = Math.max(1, cs.length);
  let mhz = cs[0]?.speed ?? 0, lanes = 8, source = 'os.cpus()';
  try {
    const info = readFileSync('/proc/cpuinfo', 'utf8');
    const m = /cpu MHz\s*:\s*([0-9.]+)/.exec(info);
    if (m) { mhz = Number(m[1]); source = '/proc/cpuinfo'; }
    const flags = /flags\s*:\s*(.*)/.exec(info)?.[1] ?? '';
    lanes = / avx2/.test(flags) ? 8 : 4; // 256-bit fp32 SIMD (AVX-512 counted as 8 lanes: Zen 4 double-pumps it)
  } catch { /* not Linux */ }
  if (!(mhz > 0)) mhz = 2445;
  const ghz = mhz / 1000;
  return { cores, ghz, lanes, flops: cores * 2 * lanes * 2 * ghz * 1e9, source };
}

export interface MemoryStats { tfBytes: number; tfTensors: number; rssBytes: number }

export function memoryStats(): MemoryStats {
  const m = tf.memory();
  return { tfBytes: m.numBytes, tfTensors: m.numTensors, rssBytes: process.memoryUsage().rss };
}

/** One row of metrics.csv. Expert load columns summarise all MoE layers (worst layer). */
export interface StepRow {
  step: number;
  loss: number;
  lmLoss: number;
  auxLoss: number;
  zLoss: number;
  gradNorm: number;
  lr: number;
  tokensPerSecond: number;
  localMfu: number;
  stepSeconds: number;
  expertLoadMaxOverMean: number;
  expertLoadCv: number;
  expertDropRate: number;
  valLoss: number | null;
  /** Per MoE layer balance of this step (flattened into metrics.csv as <stat>.L<layer> columns). */
  layers: { layer: number; maxOverMean: number; cv: number; dropRate: number }[];
  tfBytes: number;
  tfTensors: number;
  rssBytes: number;
  /** parallel runs only: simulated step seconds (timeline), simulated expert compute of the slowest EP
   *  rank (Σ MoE layers), worst layer's EP-device load max/mean under the placement in force */
  simStepSeconds?: number;
  simMoeSeconds?: number;
  deviceLoadMaxOverMean?: number;
  /** pipeline runs only: the executed step's bubble fraction */
  bubbleFraction?: number;
}

/** The metrics as an arquero table, written as CSV and JSON side by side. */
export function saveMetrics(rows: StepRow[], csvPath: string, jsonPath: string): void {
  const flat = rows.map(({ layers, ...r }) => {
    const o: Record<string, number | null> = { ...r };
    for (const l of layers) { o[`maxOverMean.L${l.layer}`] = l.maxOverMean; o[`cv.L${l.layer}`] = l.cv; o[`dropRate.L${l.layer}`] = l.dropRate; }
    return o;
  });
  const table = aq.from(flat);
  writeFileSync(csvPath, table.toCSV());
  writeFileSync(jsonPath, JSON.stringify(rows));
}

/** Per-layer load history, one entry per step: loads[layer][expert] = tokens/mean (1 = balanced). */
export interface LoadSnapshot { step: number; layers: { layer: number; relLoad: number[] }[] }

export function loadSnapshot(step: number, loads: ExpertLoad[]): LoadSnapshot {
  return {
    step,
    layers: loads.map((l) => {
      const mean = l.tokensPerExpert.reduce((a, b) => a + b, 0) / Math.max(1, l.tokensPerExpert.length);
      return { layer: l.layer, relLoad: l.tokensPerExpert.map((c) => (mean > 0 ? Math.round((c / mean) * 1000) / 1000 : 0)) };
    }),
  };
}
