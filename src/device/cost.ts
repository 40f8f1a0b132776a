// Pure op-cost functions: alpha-beta collectives per link, GEMM and memory-bound op times.
// No tfjs import: the analytical simulator (src/sim) and the executed timeline (src/device/cluster.ts)
// both call these, so they agree on every op's cost by construction.
//
// Conventions (perf-model.md §2.6, NVIDIA nccl-tests doc/PERFORMANCE.md):
//   n ranks, S bytes, alpha = link.latency, B = link.bandwidth * link.efficiency (bus bandwidth).
//   allReduce (ring)      2(n-1)·alpha + 2(n-1)/n · S/B     S = tensor bytes on each rank
//   reduceScatter         (n-1)·alpha  +  (n-1)/n · S/B     S = full (input) tensor bytes on each rank
//   allGather             (n-1)·alpha  +  (n-1)/n · S/B     S = full (output) tensor bytes on each rank
//   allToAll              (n-1)·alpha  +  (n-1)/n · S/B     S = bytes each rank sends, including its own share
//   allToAllV             (n-1)·alpha  +  max off-rank bytes sent or received by one rank / B
//   broadcast (pipelined) (n-1)·alpha  +  S/B
//   sendRecv              alpha + S/B
// A group of one rank costs nothing.
import { DTYPE_BYTES, type DeviceSpec, type Dtype, type EfficiencyCurve, type LinkSpec } from './specs.ts';

/** Effective (bus) bandwidth of a link, bytes/s. */
export const busBandwidth = (link: LinkSpec): number => link.bandwidth * link.efficiency;

/** Point-to-point transfer of `bytes` over `link`. */
export function sendRecvTime(bytes: number, link: LinkSpec): number {
  return bytes <= 0 ? 0 : link.latency + bytes / busBandwidth(link);
}

export function allReduceTime(bytes: number, n: number, link: LinkSpec): number {
  if (n <= 1) return 0;
  return 2 * (n - 1) * link.latency + (2 * (n - 1) / n) * bytes / busBandwidth(link);
}

/** `bytes` = the full tensor each rank contributes (each rank ends with bytes/n). */
export function reduceScatterTime(bytes: number, n: number, link: LinkSpec): number {
  if (n <= 1) return 0;
  return (n - 1) * link.latency + ((n - 1) / n) * bytes / busBandwidth(link);
}

/** `bytes` = the full gathered tensor each rank ends with (each rank contributes bytes/n). */
export function allGatherTime(bytes: number, n: number, link: LinkSpec): number {
  if (n <= 1) return 0;
  return (n - 1) * link.latency + ((n - 1) / n) * bytes / busBandwidth(link);
}

/** Even all-to-all: `bytes` = what each rank sends in total, including the share it keeps. */
export function allToAllTime(bytes: number, n: number, link: LinkSpec): number {
  if (n <= 1) return 0;
  return allToAllVTime((n - 1) / n * bytes, n, link);
}

/** Uneven all-to-all: `maxOffRankBytes` = max over ranks of max(bytes sent to others, bytes received from others). */
export function allToAllVTime(maxOffRankBytes: number, n: number, link: LinkSpec): number {
  if (n <= 1) return 0;
  return (n - 1) * link.latency + maxOffRankBytes / busBandwidth(link);
}

export function broadcastTime(bytes: number, n: number, link: LinkSpec): number {
  if (n <= 1) return 0;
  return (n - 1) * link.latency + bytes / busBandwidth(link);
}

/** Per-rank traffic of an all-to-all(v) split by link type: the busiest rank in each direction. */
export interface TwoTierTraffic {
  /** max over ranks of max(sent, received) bytes to/from other ranks on the same node */
  maxIntraBytes: number;
  /** max over ranks of max(sent, received) bytes to/from ranks on other nodes */
  maxInterBytes: number;
  /** group ranks on the busiest node and number of nodes the group spans */
  ranksPerNode: number;
  nodes: number;
}

/**
 * A flat all-to-all(v) over a group that spans nodes: intra-node and inter-node traffic use
 * independent links concurrently, so the time is the slower of the two tiers.
 */
export function twoTierAllToAllTime(t: TwoTierTraffic, intra: LinkSpec, inter: LinkSpec): number {
  const intraT = t.ranksPerNode > 1 && t.maxIntraBytes > 0 ? (t.ranksPerNode - 1) * intra.latency + t.maxIntraBytes / busBandwidth(intra) : 0;
  const interPeers = t.ranksPerNode * (t.nodes - 1);
  const interT = interPeers > 0 && t.maxInterBytes > 0 ? interPeers * inter.latency + t.maxInterBytes / busBandwidth(inter) : 0;
  return Math.max(intraT, interT);
}

/**
 * The paper's hierarchical all-to-all (pangu-ultra-moe.md §6.1): phase 1 exchanges tokens between
 * same-local-rank peers across `nodes` nodes (inter link), phase 2 is an intra-node all-to-allv among
 * `ranksPerNode` ranks. Bytes are per busiest rank (max of sent/received, excluding self).
 */
export function hierarchicalAllToAllTime(
  phase1MaxBytes: number, phase2MaxBytes: number, nodes: number, ranksPerNode: number, intra: LinkSpec, inter: LinkSpec,
): { interNode: number; intraNode: number; total: number } {
  const interNode = nodes > 1 && phase1MaxBytes > 0 ? allToAllVTime(phase1MaxBytes, nodes, inter) : 0;
  const intraNode = ranksPerNode > 1 && phase2MaxBytes > 0 ? allToAllVTime(phase2MaxBytes, ranksPerNode, intra) : 0;
  return { interNode, intraNode, total: interNode + intraNode };
}

// --- compute and memory ---------------------------------------------------------------------------

/** Step-curve lookup: the efficiency of the largest threshold <= size. */
export function curveEfficiency(curve: EfficiencyCurve, size: number): number {
  let e = curve[0][1];
  for (const [threshold, eff] of curve) if (size >= threshold) e = eff;
  return e;
}

/**
 * The first anchor of a curve (threshold 0) is placed this factor below the second one for the smooth lookup:
 * a 64x below the 1 GFLOP anchor is 16 MFLOP, a 200^3 GEMM, the size where launch-bound kernels bottom out.
 */
export const SMOOTH_FLOOR_RATIO = 64;

/**
 * Smooth version of the step curve: piecewise linear in log(size) through the anchors (threshold_i, eff_i),
 * with the threshold-0 anchor at threshold_1 / SMOOTH_FLOOR_RATIO; flat below the first and above the last
 * anchor. Equal to the step curve at every anchor, continuous in between (no jump at 1, 16 or 128 GFLOP).
 */
export function smoothCurveEfficiency(curve: EfficiencyCurve, size: number): number {
  const n = curve.length;
  if (n === 1) return curve[0][1];
  const x = (i: number) => (i === 0 ? curve[1][0] / SMOOTH_FLOOR_RATIO : curve[i][0]);
  if (!(size > x(0))) return curve[0][1];
  if (size >= x(n - 1)) return curve[n - 1][1];
  let i = 1;
  while (size >= x(i)) i++;
  const t = Math.log(size / x(i - 1)) / Math.log(x(i) / x(i - 1));
  return curve[i - 1][1] + t * (curve[i][1] - curve[i - 1][1]);
}

export const gemmFlops = (m: number, n: number, k: number): number => 2 * m * n * k;

/** Fraction of useful work when each dim is padded up to a multiple of `tile` (1 when tile is unset). */
export function tileUtilization(m: number, n: number, k: number, tile = 1): number {
  const u = (d: number) => d / (Math.ceil(d / tile) * tile);
  return tile <= 1 ? 1 : u(m) * u(n) * u(k);
}

/**
 * Roofline bound of an [m, k] x [k, n] GEMM: its arithmetic intensity (FLOPs per byte of A, B and C read or
 * written once) times the HBM bandwidth, as a fraction of the peak. Below 1 the GEMM is memory-bound
 * (e.g. an expert GEMM with 128 tokens: DeepGEMM's m = 128 rows reach 510-645 of 1979 TFLOPS on H800).
 */
export function rooflineEfficiency(m: number, n: number, k: number, spec: DeviceSpec, dtype: Dtype = 'bf16'): number {
  const bytes = DTYPE_BYTES[dtype] * (m * k + k * n + m * n);
  const pk = spec.peakFlops[dtype] ?? spec.peakFlops.bf16 ?? 1;
  return Math.min(1, (gemmFlops(m, n, k) / bytes) * spec.hbmBandwidth / pk);
}

/**
 * Efficiency of an [m, k] x [k, n] GEMM on `spec`: the smooth size curve (by GFLOP) times the tile
 * utilization of its shape (a GEMM with m = 17 pads to 32 on a 16-wide matrix unit), and at most the
 * roofline bound of its shape (thin GEMMs are memory-bound).
 */
export function gemmEfficiency(m: number, n: number, k: number, spec: DeviceSpec, dtype: Dtype = 'bf16'): number {
  const e = smoothCurveEfficiency(spec.efficiency.gemm, gemmFlops(m, n, k) / 1e9) * tileUtilization(m, n, k, spec.efficiency.gemmTile);
  return Math.min(e, rooflineEfficiency(m, n, k, spec, dtype));
}

export function peakFlops(spec: DeviceSpec, dtype: Dtype): number {
  const p = spec.peakFlops[dtype];
  if (!p) throw new Error(`device '${spec.name}' has no ${dtype} peak (has: ${Object.keys(spec.peakFlops).join(', ')})`);
  return p;
}

/** Time of an [m, k] x [k, n] GEMM: FLOPs / (peak x efficiency(shape)) + launch overhead. */
export function gemmTime(m: number, n: number, k: number, spec: DeviceSpec, dtype: Dtype = 'bf16'): number {
  if (m * n * k === 0) return spec.efficiency.launchOverhead;
  return gemmFlops(m, n, k) / (peakFlops(spec, dtype) * gemmEfficiency(m, n, k, spec, dtype)) + spec.efficiency.launchOverhead;
}

/** Compute-bound op of `flops` at a given efficiency (default: the curve at that size). */
export function computeTime(flops: number, spec: DeviceSpec, dtype: Dtype = 'bf16', efficiency?: number): number {
  const eff = efficiency ?? smoothCurveEfficiency(spec.efficiency.gemm, flops / 1e9);
  return (flops > 0 ? flops / (peakFlops(spec, dtype) * eff) : 0) + spec.efficiency.launchOverhead;
}

/** Memory-bound op touching `bytes` of HBM (read + write): bytes / (HBM bandwidth x efficiency(size)) + launch. */
export function memoryTime(bytes: number, spec: DeviceSpec): number {
  const eff = curveEfficiency(spec.efficiency.memory, bytes / 1e6);
  return (bytes > 0 ? bytes / (spec.hbmBandwidth * eff) : 0) + spec.efficiency.launchOverhead;
}

/**
 * Fixed cost of `kernels` kernels that together run `deviceSeconds` of work on one stream: each pays the device's
 * per-kernel `launchOverhead`, and when the host takes longer to dispatch them (`hostDispatch` each, asynchronous
 * to the device) than the device takes to run them, the difference shows as well (host bound). Returns the time
 * added to `deviceSeconds`.
 */
export function kernelFixedTime(kernels: number, deviceSeconds: number, spec: DeviceSpec): number {
  if (kernels <= 0) return 0;
  const launch = kernels * spec.efficiency.launchOverhead;
  return launch + Math.max(0, kernels * (spec.efficiency.hostDispatch ?? 0) - (deviceSeconds + launch));
}

/**
 * A host-device synchronisation (e.g. copying the tokens per expert to the host for the all-to-allv splits): the
 * device queue drains, then waits for the copy back (host-link latency) and for the host to dispatch the next
 * kernel.
 */
export function hostSyncTime(spec: DeviceSpec): number {
  return spec.hostLink.latency + (spec.efficiency.hostDispatch ?? spec.efficiency.launchOverhead);
}

/** Host <-> device copy of `bytes` (swap out / in) over the host link. */
export function hostCopyTime(bytes: number, spec: DeviceSpec): number {
  return sendRecvTime(bytes, spec.hostLink);
}

export const bytesOf = (elements: number, dtype: Dtype): number => elements * DTYPE_BYTES[dtype];
