// The parallel-training flags of `ultramoe train` (--parallel, --device, --device-memory, --dispatcher,
// --distributed-optimizer, --sequence-parallel, --trace, --placement …) and their validation against the model and batch:
// every problem at once, before any work. Pure (no tfjs).
import { resolveSpec } from '../device/spec-file.ts';
import type { ModelConfig } from '../model/config.ts';
import { LayoutError, parseLayout, resolveLayout, type ParallelSpec } from '../parallel/layout.ts';
import type { DispatcherKind } from '../parallel/ep/ep-moe.ts';
import type { SolverName } from '../parallel/placement/types.ts';

export interface PlacementFlags { solver: SolverName; period: number; threshold: number; redundantSlots: number }

export interface ParallelFlags {
  /** normalised layout, e.g. 'tp=1,cp=1,dp=8,pp=1,ep=8,etp=1' */
  layout: string;
  device: string;
  hbmBytes: number | null;
  dispatcher: DispatcherKind;
  distributedOptimizer: boolean;
  /** Megatron sequence parallelism of the dense layers (tp > 1, cp = 1) */
  sequenceParallel: boolean;
  /** Perfetto trace output file */
  trace: string | null;
  placement: PlacementFlags | null;
}

export interface RawParallelFlags {
  parallel?: string; device?: string; deviceMemory?: string; dispatcher?: string; distributedOptimizer?: boolean; sequenceParallel?: boolean; trace?: string;
  placement?: string; placementSolver?: string; placementPeriod?: string; placementThreshold?: string; redundantSlots?: string;
}

/** '64MiB', '1.5GiB', '512KB', '1e9' → bytes (NaN when unreadable). */
export function parseBytes(s: string): number {
  const m = /^\s*([0-9.eE+]+)\s*([KMGT]?)(i?)B?\s*$/i.exec(s);
  if (!m) return NaN;
  const base = m[3] ? 1024 : 1000, pow = { '': 0, K: 1, M: 2, G: 3, T: 4 }[m[2].toUpperCase() as '' | 'K' | 'M' | 'G' | 'T'];
  return Math.round(Number(m[1]) * base ** pow);
}

const DISPATCHERS: Record<string, DispatcherKind> = { alltoall: 'alltoall', hierarchical: 'alltoall-hierarchical', 'alltoall-hierarchical': 'alltoall-hierarchical', allgather: 'allgather' };

/**
 * Parse and check the flags. `dp` defaults to what EP needs: with `--parallel ep=8` alone, dp = 8/(tp·cp)
 * (Megatron folds the EP group out of the data-parallel ranks). Returns null flags when --parallel is absent.
 */
export function parseParallelFlags(raw: RawParallelFlags, cfg: ModelConfig | null, batch: number, seqLen: number, microBatches: number): { flags: ParallelFlags | null; problems: string[] } {
  const p: string[] = [];
  const given = ['device', 'deviceMemory', 'dispatcher', 'distributedOptimizer', 'sequenceParallel', 'trace', 'placement', 'placementSolver', 'placementPeriod', 'placementThreshold', 'redundantSlots'] as const;
  const flagName = (k: string) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
  if (!raw.parallel) {
    for (const k of given) if (raw[k] !== undefined && raw[k] !== false) p.push(`${flagName(k)} needs --parallel`);
    return { flags: null, problems: p };
  }
  let spec: ParallelSpec | null = null;
  try { spec = parseLayout(raw.parallel); } catch (e) { p.push(...(e instanceof LayoutError ? e.problems.map((x) => `--parallel: ${x}`) : [(e as Error).message])); }
  if (spec && !/\bdp=/.test(raw.parallel) && spec.ep * spec.etp > spec.tp * spec.cp && (spec.ep * spec.etp) % (spec.tp * spec.cp) === 0) spec.dp = (spec.ep * spec.etp) / (spec.tp * spec.cp);
  const device = raw.device ?? 'ascend-910b';
  let hbmBytes: number | null = null;
  if (raw.deviceMemory !== undefined) {
    hbmBytes = parseBytes(raw.deviceMemory);
    if (!(hbmBytes > 0)) p.push(`--device-memory must be a size like 64MiB or 2GiB (got '${raw.deviceMemory}')`);
  }
  try { resolveSpec(device, hbmBytes && hbmBytes > 0 ? { hbmBytes } : {}); } catch (e) { p.push(`--device: ${(e as Error).message}`); }
  const dispatcher = DISPATCHERS[raw.dispatcher ?? 'alltoall'];
  if (!dispatcher) p.push(`--dispatcher must be alltoall, hierarchical or allgather (got '${raw.dispatcher}')`);
  const dopt = raw.distributedOptimizer ?? false, sequenceParallel = raw.sequenceParallel ?? false;
  if (spec && sequenceParallel) {
    if (spec.tp < 2) p.push(`--sequence-parallel needs tp > 1 (got tp=${spec.tp}): it splits the dense layers' tokens over the TP group`);
    if (spec.cp > 1) p.push(`--sequence-parallel with cp=${spec.cp} is not implemented: drop one of them`);
  }
  if (spec && cfg) {
    try {
      resolveLayout(spec, { model: cfg, globalBatch: batch * microBatches, seqLen, microBatches, supported: { pp: 1, etp: 1 } });
    } catch (e) { p.push(...(e instanceof LayoutError ? e.problems.map((x) => `--parallel: ${x}`) : [(e as Error).message])); }
    // what ParallelModel does not execute (parallel-model.ts), checked here so nothing is built first
    if (cfg.numMtpLayers > 0) p.push(`--parallel: numMtpLayers ${cfg.numMtpLayers}: MTP is not executed in parallel`);
    if (cfg.moe.inputJitterEps > 0) p.push('--parallel: moe.inputJitterEps > 0 is not supported by the EP router');
    if (cfg.dropout > 0) p.push('--parallel: dropout > 0 is not supported in parallel runs');
    if (spec.tp > 1 && cfg.tieEmbeddings) p.push('--parallel: tied embeddings are not supported with tp > 1');
    if (spec.tp > 1 && cfg.moe.auxLoss.some((a) => a.coeff > 0 && a.type === 'seq')) p.push("--parallel: 'seq' aux loss is not supported with tp > 1");
    if (spec.cp > 1 && cfg.moe.auxLoss.some((a) => a.coeff > 0 && a.type === 'seq')) p.push(`--parallel: 'seq' aux loss is not supported with cp=${spec.cp} (a rank holds only chunks of each sequence)`);
  }
  let placement: PlacementFlags | null = null;
  if (raw.placement !== undefined && raw.placement !== 'static') {
    if (raw.placement !== 'dynamic') p.push(`--placement must be static or dynamic (got '${raw.placement}')`);
    const solver = (raw.placementSolver ?? 'greedy') as SolverName;
    if (!['greedy', 'eplb', 'ours'].includes(solver)) p.push(`--placement-solver must be greedy, eplb or ours (got '${raw.placementSolver}')`);
    const period = Number(raw.placementPeriod ?? 50), threshold = Number(raw.placementThreshold ?? 0.08), redundantSlots = Number(raw.redundantSlots ?? 0);
    if (!(Number.isInteger(period) && period > 0)) p.push(`--placement-period must be a positive integer (got ${raw.placementPeriod})`);
    if (!(threshold >= 0)) p.push(`--placement-threshold must be >= 0 (got ${raw.placementThreshold})`);
    if (!(Number.isInteger(redundantSlots) && redundantSlots >= 0)) p.push(`--redundant-slots must be an integer >= 0 (got ${raw.redundantSlots})`);
    else if (redundantSlots > 0) {
      if (solver === 'greedy') p.push('--redundant-slots > 0 needs --placement-solver eplb or ours (greedy does not replicate)');
      if (spec && cfg && (cfg.moe.numExperts + redundantSlots) % spec.ep !== 0) p.push(`--redundant-slots: numExperts + R = ${cfg.moe.numExperts + redundantSlots} must be divisible by ep=${spec.ep}`);
    }
    if (spec && spec.ep < 2) p.push('--placement dynamic needs ep >= 2');
    // replicaNormExcess (the global norm with replicas) assumes synchronised gradients
    if (dopt && Number(raw.redundantSlots ?? 0) > 0) p.push('--redundant-slots > 0 is not supported with --distributed-optimizer (the replica gradient norm needs synchronised gradients)');
    placement = { solver, period, threshold, redundantSlots };
  } else for (const k of ['placementSolver', 'placementPeriod', 'placementThreshold', 'redundantSlots'] as const) if (raw[k] !== undefined) p.push(`${flagName(k)} needs --placement dynamic`);
  const layout = spec ? `tp=${spec.tp},cp=${spec.cp},dp=${spec.dp},pp=${spec.pp},ep=${spec.ep},etp=${spec.etp}` : raw.parallel;
  return { flags: { layout, device, hbmBytes, dispatcher: dispatcher ?? 'alltoall', distributedOptimizer: dopt, sequenceParallel, trace: raw.trace ?? null, placement }, problems: p };
}
