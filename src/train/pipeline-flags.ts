// The pipeline / recompute / swap flags of `ultramoe train` (--parallel pp=4[,ep=2,tp=2,dp=2], --vpp,
// --schedule, --overlap, --recompute, --swap, --min-offload-size, --offload-fraction, --memory-budget)
// and their validation: every problem at once, before any work. Two executors:
//   - pp alone (or only --recompute/--swap/--memory-budget, pp = 1): src/parallel/exec's runTrainStep,
//     one simulated device per pipeline rank, with the memory plans;
//   - pp > 1 with tp/dp/ep inside the stages: src/parallel/pp (train/pp-parallel.ts), each stage a
//     lockstep group of tp·dp devices, with --overlap on|off (adaptive pipe overlap of the EP a2a) and
//     full or selective --recompute (local classes) / --swap per device (pp/stage-memory-rules.ts), or
//     --memory-budget planned per stage among those (pp/stage-budget.ts).
// Pure (no tfjs).
import { resolveSpec } from '../device/spec-file.ts';
import type { ModelConfig } from '../model/config.ts';
import { MODULE_CLASSES } from '../parallel/memory/descriptors.ts';
import { LayoutError, parseLayout, resolveLayout, type ParallelSpec } from '../parallel/layout.ts';
import { partitionLayers } from '../parallel/pipeline/partition.ts';
import { schedule1F1B, scheduleGPipe, scheduleInterleaved } from '../parallel/pipeline/schedule.ts';
import { parseBytes } from './parallel-flags.ts';
import { stageMemoryProblems } from '../parallel/pp/stage-memory-rules.ts';
import type { DispatcherKind } from '../parallel/ep/ep-moe.ts';

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
  /** tp/cp/dp/ep inside each pipeline stage (src/parallel/pp); null: one device per stage (src/parallel/exec) */
  inner: { tp: number; cp: number; dp: number; ep: number } | null;
  /** adaptive pipe overlap (--overlap on; needs inner ep > 1) */
  overlap: boolean;
  /** run the first batch once more with the other --overlap mode for the summary (--overlap-compare on|off, default on; pp × ep only) */
  compareOverlap: boolean;
  dispatcher: DispatcherKind;
  sequenceParallel: boolean;
}

export interface RawPipelineFlags {
  vpp?: string; schedule?: string; recompute?: string; recomputeNumLayers?: string; swap?: string; minOffloadSize?: string; offloadFraction?: string;
  memoryBudget?: string; overlap?: string; overlapCompare?: string;
}

/** What the pipeline executors run, for the problem lines. */
export const PIPELINE_SUPPORTED = 'pp with tp/dp/ep inside the stages runs --vpp, --schedule, --overlap, --dispatcher, --sequence-parallel, --recompute full (layers replayed in lockstep, collectives included), selective --recompute of local classes, --swap and --memory-budget (chosen per stage among those; never full)';

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
 * are the flags of ParallelModel runs: --dispatcher and --sequence-parallel apply to pp × tp/dp/ep runs,
 * the rest is refused here. --overlap on needs pp > 1 with ep > 1 inside the stages.
 */
export function parsePipelineFlags(parallel: string | undefined, raw: RawPipelineFlags, common: { device?: string; deviceMemory?: string; trace?: string },
  parallelOnly: ParallelOnlyFlags, cfg: ModelConfig | null, microBatches: number): { flags: PipelineFlags | null; problems: string[] } {
  const p: string[] = [];
  let spec: ParallelSpec = { tp: 1, cp: 1, dp: 1, pp: 1, ep: 1, etp: 1 };
  if (parallel) {
    try { spec = parseLayout(parallel); } catch (e) { p.push(...(e instanceof LayoutError ? e.problems.map((x) => `--parallel: ${x}`) : [(e as Error).message])); }
  }
  // 'pp=4,ep=2': EP folds the stage's dp ranks, so an unspecified dp defaults to ep/(tp·cp) (as parallel-flags.ts)
  if (parallel && !/\bdp=/.test(parallel) && spec.ep * spec.etp > spec.tp * spec.cp && (spec.ep * spec.etp) % (spec.tp * spec.cp) === 0) spec.dp = (spec.ep * spec.etp) / (spec.tp * spec.cp);
  const innerPar = spec.tp * spec.cp * spec.dp * spec.ep > 1;
  const memFlags = (['recompute', 'recomputeNumLayers', 'swap', 'minOffloadSize', 'offloadFraction', 'memoryBudget'] as const).filter((k) => raw[k] !== undefined);
  if (innerPar && spec.pp === 1) {
    for (const k of ['tp', 'cp', 'dp', 'ep'] as const) if (spec[k] > 1) p.push(`--parallel ${parallel}: ${k}=${spec[k]} without pp > 1 cannot be combined with ${memFlags.map(flagName).join(', ') || '--vpp/--schedule'} (${PIPELINE_SUPPORTED})`);
  } else if (innerPar) {
    // selective recompute of local classes and swap run per device inside the stages (parallel/pp/stage-memory.ts)
    p.push(...stageMemoryProblems(raw.recompute ?? 'none', raw.swap ?? 'none', raw.memoryBudget === undefined ? undefined : 1, `--parallel ${parallel}`));
    if (spec.cp > 1) p.push(`--parallel ${parallel}: cp=${spec.cp} with pp > 1 is not supported (context parallelism inside pipeline stages is not tested)`);
  }
  if (spec.etp > 1) p.push(`--parallel ${parallel}: etp=${spec.etp} is not executed`);
  const inner = spec.pp > 1 && innerPar ? { tp: spec.tp, cp: spec.cp, dp: spec.dp, ep: spec.ep } : null;
  for (const [k, v] of Object.entries(parallelOnly)) {
    if (v === undefined || v === false || (k === 'placement' && v === 'static')) continue;
    if (inner && (k === 'dispatcher' || k === 'sequenceParallel')) continue;
    p.push(`${flagName(k)} applies to --parallel tp/cp/dp/ep runs${inner ? ' without pp' : ''}, not to ${inner ? 'pp × tp/dp/ep' : 'pipeline/recompute/swap'} runs (${PIPELINE_SUPPORTED})`);
  }
  const DISPATCHERS: Record<string, DispatcherKind> = { alltoall: 'alltoall', hierarchical: 'alltoall-hierarchical', allgather: 'allgather' };
  const dispatcher = DISPATCHERS[parallelOnly.dispatcher ?? 'alltoall'];
  if (!dispatcher) p.push(`--dispatcher must be alltoall, hierarchical or allgather (got '${parallelOnly.dispatcher}')`);
  const sequenceParallel = !!parallelOnly.sequenceParallel;
  if (inner && sequenceParallel && inner.tp < 2) p.push(`--sequence-parallel needs tp > 1 (got tp=${inner.tp})`);
  let overlap = false;
  const compareOverlap = raw.overlapCompare === undefined || raw.overlapCompare === 'on';
  if (raw.overlapCompare !== undefined && !['on', 'off'].includes(raw.overlapCompare)) p.push(`--overlap-compare must be on or off (got '${raw.overlapCompare}')`);
  if (raw.overlap !== undefined && raw.overlap !== 'off') {
    if (raw.overlap !== 'on') p.push(`--overlap must be on or off (got '${raw.overlap}')`);
    else if (!inner || inner.ep < 2) p.push(`--overlap on needs --parallel pp>1 with ep>1 (it overlaps the EP all-to-all of one micro-batch with compute of another; got --parallel ${parallel ?? '(none)'})`);
    else if (raw.schedule === 'gpipe') p.push('--overlap on needs --schedule 1f1b or interleaved (GPipe has no steady-state F/B pairs)');
    else if (dispatcher === 'allgather') p.push('--overlap on needs --dispatcher alltoall or hierarchical (the overlapped ops are the EP all-to-alls)');
    else overlap = true;
  }
  if (inner && cfg) {
    // what the stages' ParallelModel does not execute (parallel-model.ts), checked here so nothing is built first
    if (cfg.numMtpLayers > 0) p.push(`--parallel ${parallel}: numMtpLayers ${cfg.numMtpLayers}: MTP is not executed in parallel`);
    if (cfg.dropout > 0) p.push(`--parallel ${parallel}: dropout > 0 is not supported in parallel runs`);
    if (inner.tp > 1 && cfg.tieEmbeddings) p.push(`--parallel ${parallel}: tied embeddings are not supported with tp > 1`);
    if (inner.tp > 1 && cfg.moe.auxLoss.some((a) => a.coeff > 0 && a.type === 'seq')) p.push(`--parallel ${parallel}: 'seq' aux loss is not supported with tp > 1`);
    try {
      resolveLayout({ ...spec }, { model: cfg, microBatches, supported: { etp: 1 } });
    } catch (e) { p.push(...(e instanceof LayoutError ? e.problems.map((x) => `--parallel: ${x}`) : [(e as Error).message])); }
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
  if (cfg && cfg.moe.inputJitterEps > 0) p.push(inner ? '--parallel: moe.inputJitterEps > 0 is not supported by the EP router' : 'moe.inputJitterEps > 0 is not supported by pipeline/recompute/swap runs (the executor seeds micro-batch m with 1+m)');
  let hbmBytes: number | null = null;
  if (common.deviceMemory !== undefined) {
    hbmBytes = parseBytes(common.deviceMemory);
    if (!(hbmBytes > 0)) p.push(`--device-memory must be a size like 64MiB or 2GiB (got '${common.deviceMemory}')`);
  }
  const device = common.device ?? 'ascend-910b';
  try { resolveSpec(device, hbmBytes && hbmBytes > 0 ? { hbmBytes } : {}); } catch (e) { p.push(`--device: ${(e as Error).message}`); }
  return { flags: { pp, vpp, schedule, recompute, recomputeNumLayers, swap, minOffloadSize, offloadFraction, memoryBudget, device, hbmBytes, trace: common.trace ?? null, inner, overlap, compareOverlap, dispatcher: dispatcher ?? 'alltoall', sequenceParallel }, problems: p };
}
