// The pipeline / recompute / swap flags of `ultramoe train` (--parallel pp=4, --vpp, --schedule,
// --recompute, --swap, --min-offload-size, --offload-fraction, --memory-budget) and their validation:
// every problem at once, before any work. Such runs go through src/parallel/exec's runTrainStep (one
// simulated device per pipeline rank; pp = 1 when only --recompute/--swap/--memory-budget are given).
// Pure (no tfjs).
import { resolveSpec } from '../device/spec-file.ts';
import type { ModelConfig } from '../model/config.ts';
import { MODULE_CLASSES } from '../parallel/memory/descriptors.ts';
import { LayoutError, parseLayout, type ParallelSpec } from '../parallel/layout.ts';
import { partitionLayers } from '../parallel/pipeline/partition.ts';
import { schedule1F1B, scheduleGPipe, scheduleInterleaved } from '../parallel/pipeline/schedule.ts';
import { parseBytes } from './parallel-flags.ts';

export type PipelineSchedule = 'gpipe' | '1f1b' | 'interleaved';

export interface PipelineFlags {
  pp: number;
  vpp: number;
  schedule: PipelineSchedule;
  /** 'none' | 'full' | module classes */
  recompute: string;
  /** layers per full-recompute group (Megatron recompute_num_layers, uniform); 1 unless --recompute full */
  recomputeNumLayers: number;
  /** 'none' | module classes */
  swap: string;
  minOffloadSize?: number;
  offloadFraction?: number;
  /** bytes of saved activations per device; the planner then chooses recompute/swap */
  memoryBudget?: number;
  device: string;
  hbmBytes: number | null;
  /** Perfetto trace output file (the last step) */
  trace: string | null;
}

export interface RawPipelineFlags {
  vpp?: string; schedule?: string; recompute?: string; recomputeNumLayers?: string; swap?: string; minOffloadSize?: string; offloadFraction?: string;
  memoryBudget?: string; overlap?: string;
}

/** What the pipeline executor runs, for the problem lines. */
export const PIPELINE_SUPPORTED = 'the pipeline executor runs pp (with vpp) alone: tp, cp, dp and ep must be 1; for tp/cp/dp/ep use --parallel without pp, --vpp, --schedule, --recompute, --swap and --memory-budget';

const PIPE_KEYS = ['vpp', 'schedule', 'recompute', 'recomputeNumLayers', 'swap', 'minOffloadSize', 'offloadFraction', 'memoryBudget'] as const;
const flagName = (k: string) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

/** Whether the run goes through the pipeline executor: pp > 1 in --parallel, or any executor flag. */
export function wantsPipeline(parallel: string | undefined, raw: RawPipelineFlags): boolean {
  if (PIPE_KEYS.some((k) => raw[k] !== undefined)) return true;
  if (!parallel) return false;
  try { return parseLayout(parallel).pp > 1; } catch { return /\bpp=/.test(parallel) && !/\bpp=1\b/.test(parallel); }
}

export interface ParallelOnlyFlags { dispatcher?: string; distributedOptimizer?: boolean; sequenceParallel?: boolean; placement?: string; placementSolver?: string; placementPeriod?: string; placementThreshold?: string; redundantSlots?: string }

/**
 * Parse and check the flags of a pipeline-executor run (call only when `wantsPipeline`). `parallelOnly`
 * are the flags of ParallelModel runs, refused here. --overlap on is refused with pp (and otherwise:
 * nothing in `train` executes it).
 */
export function parsePipelineFlags(parallel: string | undefined, raw: RawPipelineFlags, common: { device?: string; deviceMemory?: string; trace?: string },
  parallelOnly: ParallelOnlyFlags, cfg: ModelConfig | null, microBatches: number): { flags: PipelineFlags | null; problems: string[] } {
  const p: string[] = [];
  let spec: ParallelSpec = { tp: 1, cp: 1, dp: 1, pp: 1, ep: 1, etp: 1 };
  if (parallel) {
    try { spec = parseLayout(parallel); } catch (e) { p.push(...(e instanceof LayoutError ? e.problems.map((x) => `--parallel: ${x}`) : [(e as Error).message])); }
  }
  for (const k of ['tp', 'cp', 'dp', 'ep', 'etp'] as const)
    if (spec[k] > 1) p.push(`--parallel ${parallel}: ${k}=${spec[k]} cannot be combined with pipeline/recompute/swap execution (${PIPELINE_SUPPORTED})`);
  for (const [k, v] of Object.entries(parallelOnly)) if (v !== undefined && v !== false && !(k === 'placement' && v === 'static'))
    p.push(`${flagName(k)} applies to --parallel tp/cp/dp/ep runs, not to pipeline/recompute/swap runs (${PIPELINE_SUPPORTED})`);
  if (raw.overlap !== undefined && raw.overlap !== 'off') {
    if (raw.overlap !== 'on') p.push(`--overlap must be on or off (got '${raw.overlap}')`);
    else p.push(`--overlap on is not executed with pp=${spec.pp}: the pipeline executor has no EP communication to overlap (EP×PP overlap is src/parallel/overlap, not wired into train); use --overlap off`);
  }
  const pp = spec.pp;
  const vpp = raw.vpp === undefined ? 1 : Number(raw.vpp);
  if (!(Number.isInteger(vpp) && vpp >= 1)) p.push(`--vpp must be an integer >= 1 (got '${raw.vpp}')`);
  const schedule = (raw.schedule ?? (vpp > 1 ? 'interleaved' : '1f1b')) as PipelineSchedule;
  if (!['gpipe', '1f1b', 'interleaved'].includes(schedule)) p.push(`--schedule must be gpipe, 1f1b or interleaved (got '${raw.schedule}')`);
  else if (schedule !== 'interleaved' && vpp > 1) p.push(`--schedule ${schedule} needs --vpp 1 (got ${vpp}); use --schedule interleaved`);
  else if (Number.isInteger(vpp) && vpp >= 1 && pp >= 1) {
    try {
      if (schedule === 'interleaved') scheduleInterleaved(pp, vpp, microBatches);
      else if (schedule === 'gpipe') scheduleGPipe(pp, microBatches); else schedule1F1B(pp, microBatches);
    } catch (e) { p.push(`--schedule ${schedule} with pp=${pp}, vpp=${vpp}, --micro-batches ${microBatches}: ${(e as Error).message}`); }
    if (cfg) { try { partitionLayers(new Array(cfg.numLayers).fill(1), pp, vpp); } catch (e) { p.push(`--parallel pp=${pp} --vpp ${vpp}: ${(e as Error).message} (the model has numLayers ${cfg.numLayers}; e.g. --override '{"numLayers":${pp * vpp}}')`); } }
  }
  const classes = (flag: string, s: string, extra: string[]) => {
    if (extra.includes(s)) return;
    const names = s.split(',').map((x) => x.trim()).filter(Boolean);
    const bad = names.filter((n) => !(MODULE_CLASSES as readonly string[]).includes(n) && !extra.includes(n));
    const alone = names.filter((n) => extra.includes(n));
    if (!names.length || bad.length) p.push(`${flag} must be ${extra.join(', ')} or module classes (${MODULE_CLASSES.join(', ')}); unknown: '${bad.join(',') || s}'`);
    if (alone.length) p.push(`${flag}: '${alone.join(',')}' stands alone, not in a list of module classes (got '${s}')`);
  };
  const recompute = raw.recompute ?? 'none', swap = raw.swap ?? 'none';
  classes('--recompute', recompute, ['none', 'full']);
  classes('--swap', swap, ['none']);
  const recomputeNumLayers = raw.recomputeNumLayers === undefined ? 1 : Number(raw.recomputeNumLayers);
  if (raw.recomputeNumLayers !== undefined) {
    if (recompute !== 'full') p.push('--recompute-num-layers needs --recompute full');
    if (!(Number.isInteger(recomputeNumLayers) && recomputeNumLayers >= 1)) p.push(`--recompute-num-layers must be an integer >= 1 (got '${raw.recomputeNumLayers}')`);
  }
  let minOffloadSize: number | undefined, offloadFraction: number | undefined, memoryBudget: number | undefined;
  if (raw.minOffloadSize !== undefined) { minOffloadSize = parseBytes(raw.minOffloadSize); if (!(minOffloadSize >= 0)) p.push(`--min-offload-size must be a size like 1MiB or 4096 (got '${raw.minOffloadSize}')`); }
  if (raw.offloadFraction !== undefined) { offloadFraction = Number(raw.offloadFraction); if (!(offloadFraction > 0 && offloadFraction <= 1)) p.push(`--offload-fraction must be in (0, 1] (got '${raw.offloadFraction}')`); }
  if ((minOffloadSize !== undefined || offloadFraction !== undefined) && swap === 'none' && raw.memoryBudget === undefined) p.push('--min-offload-size/--offload-fraction need --swap <classes>');
  if (raw.memoryBudget !== undefined) {
    memoryBudget = parseBytes(raw.memoryBudget);
    if (!(memoryBudget > 0)) p.push(`--memory-budget must be a size like 24MiB (got '${raw.memoryBudget}')`);
    if (raw.recompute !== undefined || raw.swap !== undefined) p.push('--memory-budget chooses recompute and swap itself: drop --recompute/--swap');
  }
  if (cfg && cfg.moe.inputJitterEps > 0) p.push('moe.inputJitterEps > 0 is not supported by pipeline/recompute/swap runs (the executor seeds micro-batch m with 1+m)');
  let hbmBytes: number | null = null;
  if (common.deviceMemory !== undefined) {
    hbmBytes = parseBytes(common.deviceMemory);
    if (!(hbmBytes > 0)) p.push(`--device-memory must be a size like 64MiB or 2GiB (got '${common.deviceMemory}')`);
  }
  const device = common.device ?? 'ascend-910b';
  try { resolveSpec(device, hbmBytes && hbmBytes > 0 ? { hbmBytes } : {}); } catch (e) { p.push(`--device: ${(e as Error).message}`); }
  return { flags: { pp, vpp, schedule, recompute, recomputeNumLayers, swap, minOffloadSize, offloadFraction, memoryBudget, device, hbmBytes, trace: common.trace ?? null }, problems: p };
}
