// Parallel layouts: validation (every problem listed at once) and enumeration of every layout
// that divides evenly for a model on N devices. Megatron rules: world = TP·CP·PP·DP, TP inside a
// node, heads % TP, experts % EP, EP folded into TP·CP·DP ("parallel folding", ETP = 1),
// global batch % (DP·micro-batch), interleaving needs PP > 1 and enough layers.
import type { ModelConfig } from '../model/config.ts';
import type { DeviceSpec } from '../device/specs.ts';
import type { ParallelLayout } from './types.ts';

export class LayoutError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid parallel layout (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n  - ${problems.join('\n  - ')}`);
  }
}

const isPosInt = (v: number) => Number.isInteger(v) && v > 0;

/** Pipeline layers (transformer + MTP) that the stages share. */
export const pipelineLayers = (cfg: ModelConfig) => cfg.numLayers + cfg.numMtpLayers;

/** Every problem with `l` for `cfg` on `devices` devices of `spec` (empty when valid). */
export function layoutProblems(cfg: ModelConfig, l: ParallelLayout, devices: number, spec: DeviceSpec): string[] {
  const p: string[] = [];
  for (const k of ['tp', 'pp', 'vpp', 'ep', 'cp', 'microBatch', 'globalBatch', 'seqLen'] as const)
    if (!isPosInt(l[k])) p.push(`${k} must be a positive integer (got ${l[k]})`);
  if (!isPosInt(devices)) p.push(`devices must be a positive integer (got ${devices})`);
  if (p.length) return p;
  const dpOk = isPosInt(l.dp);
  if (devices % (l.tp * l.cp * l.pp) !== 0) p.push(`devices (${devices}) not divisible by TP·CP·PP = ${l.tp}·${l.cp}·${l.pp} = ${l.tp * l.cp * l.pp}`);
  else if (!dpOk) p.push(`dp must be a positive integer (got ${l.dp})`);
  else if (l.tp * l.cp * l.pp * l.dp !== devices) p.push(`devices (${devices}) != TP·CP·PP·DP = ${l.tp}·${l.cp}·${l.pp}·${l.dp} = ${l.tp * l.cp * l.pp * l.dp}`);
  if (l.tp > spec.devicesPerNode) p.push(`TP (${l.tp}) must fit in one node (${spec.devicesPerNode} devices per node)`);
  if (cfg.numHeads % l.tp !== 0) p.push(`numHeads (${cfg.numHeads}) not divisible by TP (${l.tp})`);
  if (cfg.attention === 'gqa' && cfg.numKvHeads % l.tp !== 0 && l.tp % cfg.numKvHeads !== 0)
    p.push(`numKvHeads (${cfg.numKvHeads}) and TP (${l.tp}) must divide one another`);
  const hasMoE = cfg.numLayers > cfg.numDenseLayers;
  if (hasMoE) {
    if (cfg.moe.numExperts % l.ep !== 0) p.push(`numExperts (${cfg.moe.numExperts}) not divisible by EP (${l.ep})`);
    if (dpOk && (l.tp * l.cp * l.dp) % l.ep !== 0) p.push(`EP (${l.ep}) must divide TP·CP·DP = ${l.tp * l.cp * l.dp} (experts fold into the data/tensor grid)`);
  } else if (l.ep !== 1) p.push(`EP must be 1 for a dense model (got ${l.ep})`);
  if (dpOk && l.globalBatch % (l.dp * l.microBatch) !== 0)
    p.push(`globalBatch (${l.globalBatch}) not divisible by DP·microBatch = ${l.dp}·${l.microBatch}`);
  if (l.seqLen % (l.tp * l.cp) !== 0) p.push(`seqLen (${l.seqLen}) not divisible by TP·CP = ${l.tp * l.cp} (sequence parallel)`);
  if (l.cp > 1 && l.seqLen % (2 * l.cp) !== 0) p.push(`seqLen (${l.seqLen}) not divisible by 2·CP (load-balanced context parallel)`);
  const n = pipelineLayers(cfg);
  if (l.pp * l.vpp > n) p.push(`PP·VPP = ${l.pp * l.vpp} exceeds the ${n} pipeline layers`);
  if (l.vpp > 1 && l.pp === 1) p.push(`VPP (${l.vpp}) needs PP > 1`);
  if (dpOk && l.vpp > 1 && l.globalBatch % (l.dp * l.microBatch) === 0) {
    const m = l.globalBatch / (l.dp * l.microBatch);
    if (m < l.pp) p.push(`interleaved schedule needs micro-batches (${m}) >= PP (${l.pp})`);
  }
  if (l.seqLen > cfg.maxSeqLen) p.push(`seqLen (${l.seqLen}) exceeds the model's maxSeqLen (${cfg.maxSeqLen})`);
  return p;
}

export function assertValidLayout(cfg: ModelConfig, l: ParallelLayout, devices: number, spec: DeviceSpec): void {
  const p = layoutProblems(cfg, l, devices, spec);
  if (p.length) throw new LayoutError(p);
}

export const divisors = (n: number): number[] => {
  const out: number[] = [];
  for (let i = 1; i <= n; i++) if (n % i === 0) out.push(i);
  return out;
};

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

export interface EnumerateOptions {
  seqLen: number;
  globalBatch: number;
  microBatches?: number[];
  maxTp?: number;
  cps?: number[];
  vpps?: number[];
  maxPp?: number;
}

/**
 * Every layout for `cfg` on `devices` that divides evenly (calls `visit` on one reused object,
 * so the caller must copy what it keeps). Returns the number visited.
 */
export function forEachLayout(cfg: ModelConfig, devices: number, spec: DeviceSpec, o: EnumerateOptions,
  visit: (l: ParallelLayout) => void): number {
  const l: ParallelLayout = { tp: 1, pp: 1, vpp: 1, ep: 1, cp: 1, dp: 1, microBatch: 1, globalBatch: o.globalBatch, seqLen: o.seqLen };
  const n = pipelineLayers(cfg);
  const hasMoE = cfg.numLayers > cfg.numDenseLayers;
  const E = cfg.moe.numExperts;
  const tps = divisors(Math.min(o.maxTp ?? spec.devicesPerNode, spec.devicesPerNode)).filter((t) => cfg.numHeads % t === 0);
  const cps = o.cps ?? [1];
  const mbs = o.microBatches ?? [1, 2];
  const vpps = o.vpps ?? [1, 2, 4];
  let count = 0;
  for (const tp of tps) for (const cp of cps) {
    if (devices % (tp * cp) !== 0 || o.seqLen % (tp * cp) !== 0 || (cp > 1 && o.seqLen % (2 * cp) !== 0)) continue;
    const rest = devices / (tp * cp);
    for (let pp = 1; pp <= Math.min(rest, o.maxPp ?? 64, n); pp++) {
      if (rest % pp !== 0) continue;
      const dp = rest / pp;
      const grid = tp * cp * dp;
      for (const vpp of vpps) {
        if (vpp > 1 && pp === 1) continue;
        if (pp * vpp > n) continue;
        for (const mb of mbs) {
          if (o.globalBatch % (dp * mb) !== 0) continue;
          const m = o.globalBatch / (dp * mb);
          if (vpp > 1 && m < pp) continue;
          for (const ep of hasMoE ? divisors(gcd(E, grid)) : [1]) {
            l.tp = tp; l.cp = cp; l.pp = pp; l.dp = dp; l.vpp = vpp; l.microBatch = mb; l.ep = ep;
            visit(l); count++;
          }
        }
      }
    }
  }
  return count;
}
