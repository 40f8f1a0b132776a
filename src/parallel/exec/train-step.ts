// One training step of a model on a simulated cluster with pipeline parallelism, recomputation and
// swapping: the entry point for the CLI (`ultramoe train --parallel pp=4 --vpp 2 --micro-batches 8
// --schedule 1f1b --recompute <...> --swap <...> --memory-budget <bytes>`).
//
//   const r = await runTrainStep(model, { pp: 4, vpp: 2, microBatches: mbs, schedule: 'interleaved',
//                                         recompute: 'core_attn,moe_act', swap: 'none' });
//   r.loss, r.grads (GradStore, caller disposes), r.perDevicePeakByCategory, r.bubbleFraction,
//   r.stepTimeSeconds, r.trace (Perfetto JSON), r.ganttSvg
//
// Planning is pure (partition, schedule, plan); `runPipeline` executes. Layer costs for the partition
// and the timeline come from the config's FLOPs (execLayout) and the device's cost functions.
import type { Cluster } from '../../device/cluster.ts';
import { Cluster as ClusterImpl } from '../../device/cluster.ts';
import { computeTime, hostCopyTime, memoryTime, sendRecvTime } from '../../device/cost.ts';
import { simulateSchedule } from '../pipeline/simulate.ts';
import { getSpec } from '../../device/specs.ts';
import type { DeviceSpec, Dtype } from '../../device/specs.ts';
import type { MoEGPT } from '../../model/gpt.ts';
import type { GradStore } from '../../model/module.ts';
import { MODULE_CLASSES, type ModuleClass, type SavedActivationDesc } from '../memory/descriptors.ts';
import { makePlan, type MemoryPlan, type RecomputePolicy, type SwapPolicy } from '../memory/policy.ts';
import type { PlannerResult } from '../memory/planner.ts';
import { cachedPlanMemory } from '../memory/plan-cache.ts';
import { evaluatePlan, type MemoryCostModel, type PlanCost, type StageTiming } from '../memory/cost.ts';
import { partitionLayers, type Partition } from '../pipeline/partition.ts';
import { scheduleGPipe, schedule1F1B, scheduleInterleaved, warmupInterleaved, type Schedule } from '../pipeline/schedule.ts';
import { execLayout, type ExecLayout } from './layout.ts';
import { runPipeline, type PipelineRunResult } from './pipeline-executor.ts';
import { ganttSvg, hostSwappedPeak, measureBubble, peakByCategory } from './report.ts';
import type { MicroBatch } from './stage-runner.ts';

export type ScheduleKind = 'gpipe' | '1f1b' | 'interleaved';

export interface TrainStepOptions {
  pp: number;
  vpp?: number;
  schedule?: ScheduleKind;               // default: interleaved if vpp > 1 else 1f1b
  microBatches: MicroBatch[];
  /** 'none' | 'full' | comma-separated module classes (selective), e.g. 'core_attn,moe_act,norm'. */
  recompute?: string;
  /** Layers per full-recompute group (Megatron recompute_num_layers, method 'uniform'). */
  recomputeNumLayers?: number;
  /** 'none' | comma-separated module classes to offload to host. */
  swap?: string;
  minOffloadSize?: number;
  offloadFraction?: number;
  /** Activation bytes per device at the peak: the planner chooses recompute/swap per (class, layer). */
  memoryBudget?: number;
  /** A cluster to run on (pipeline rank r = device r), else one node of `spec` (default ascend-910b). */
  cluster?: Cluster;
  spec?: DeviceSpec;
  /** false: embedding/head/MTP cost nothing on the timeline (uniform stages). */
  chargeEmbeddingHead?: boolean;
  /** Render the Gantt SVG (default true). */
  gantt?: boolean;
  /** EP size, for the permute recompute cost only (EP is not executed here). */
  ep?: number;
}

export interface TrainStepResult {
  loss: number;
  grads: GradStore;
  perDevicePeakByCategory: Record<string, number>[];
  hostSwappedPeakBytes: number[];
  /** Peak resident saved-activation bytes per pipeline rank (SavedActivations ledger). */
  peakActivationBytes: number[];
  bubbleFraction: number;
  epCommHiddenFraction?: number;
  stepTimeSeconds: number;
  trace: ReturnType<Cluster['trace']>;
  ganttSvg: string;
  plan: MemoryPlan | null;
  /** The planner's results per pipeline rank (with --memory-budget): fits, predicted cost, why. */
  planner: PlannerResult[];
  /** The cost model's prediction for the executed plan, per pipeline rank (peak, added time). */
  predicted: PlanCost[];
  /** Predicted step time: the pure pipeline simulator over the ranks' predicted F and B (+ added) times. */
  predictedStepSeconds: number;
  partition: Partition;
  schedule: Schedule;
  run: PipelineRunResult;
  cluster: Cluster;
}

/** Parse a module-class list ('a,b'); throws on unknown names. */
export function parseModules(s: string): ModuleClass[] {
  const names = s.split(',').map((x) => x.trim()).filter(Boolean);
  const bad = names.filter((n) => !(MODULE_CLASSES as readonly string[]).includes(n));
  if (bad.length) throw new Error(`unknown module class(es) ${bad.join(', ')} (known: ${MODULE_CLASSES.join(', ')})`);
  return names as ModuleClass[];
}

export function makeSchedule(kind: ScheduleKind, pp: number, vpp: number, M: number): Schedule {
  if (kind === 'interleaved') return scheduleInterleaved(pp, vpp, M);
  if (vpp !== 1) throw new Error(`schedule '${kind}' needs vpp = 1 (got ${vpp}); use 'interleaved'`);
  return kind === 'gpipe' ? scheduleGPipe(pp, M) : schedule1F1B(pp, M);
}

/** Micro-batches alive at the peak on pipeline rank r (whole-stage units) for the planner. */
export function inFlightOf(kind: ScheduleKind, pp: number, vpp: number, M: number, r: number): number {
  if (kind === 'gpipe') return M;
  if (kind === '1f1b') return Math.min(pp - r, M);
  return Math.min(M, Math.ceil((warmupInterleaved(pp, r, vpp, M) + 1) / vpp));
}

/**
 * How the executor charges a stage's ops (pure): layer ops as `computeTime` FLOP ops, host copies,
 * embedding (first stage) and head + MTP (last stage), as in ChunkRunner.
 */
export function stageTiming(lay: Pick<ExecLayout, 'costs'>, spec: DeviceSpec, first: boolean, last: boolean, dtype: Dtype = 'bf16', mtpDepth = 0): StageTiming {
  const c = lay.costs, eh = c.chargeEmbeddingHead ?? true, bf = c.backwardFactor ?? 2;
  const op = (f: number) => (f > 0 ? computeTime(f, spec, dtype) : 0);
  const mem = (b: number) => (b > 0 ? memoryTime(b, spec) : 0);
  return {
    opSeconds: op, launch: spec.efficiency.launchOverhead, copySeconds: (b) => hostCopyTime(b, spec), backwardFactor: bf,
    embeddingForward: first && eh ? mem(c.embeddingBytes) : 0, embeddingBackward: first && eh ? mem(bf * c.embeddingBytes) : 0,
    headSeconds: last && eh ? op(c.headFlops) + op(bf * c.headFlops) + mtpDepth * (op(c.mtpFlops) + op(bf * c.mtpFlops)) : 0,
    // everything the functions above depend on: the planner's cache key (memory/plan-cache.ts)
    key: JSON.stringify({ spec, dtype, first, last, mtpDepth, c: { ...c, layerForwardFlops: undefined } }),
  };
}

/** The planner's cost model of each pipeline rank (pure): its layers, in-flight count, records, op costs. */
export function stageCostModels(part: Partition, o: TrainStepOptions, kind: ScheduleKind, spec: DeviceSpec,
  layerFlops: Map<number, number>, lay?: ExecLayout, mtpDepth = 0, dtype: Dtype = 'bf16'): { stage: number; layers: Set<number>; model: MemoryCostModel }[] {
  const stageLayers = part.chunks.map((c) => Array.from({ length: c.end - c.start }, (_, i) => c.start + i));
  const M = o.microBatches.length, vpp = o.vpp ?? 1;
  const perLayer = [...layerFlops.values()].reduce((a, b) => a + b, 0) / Math.max(layerFlops.size, 1);
  const flops = perLayer / computeTime(perLayer, spec); // effective FLOP/s of one layer's op, as charged
  return part.stages.map((st) => {
    const layers = new Set(st.chunks.flatMap((c) => stageLayers[c.index]));
    const first = st.chunks.some((c) => c.index === 0), last = st.chunks.some((c) => c.index === part.chunks.length - 1);
    return { stage: st.stage, layers, model: {
      flops, hostBandwidth: spec.hostLink.bandwidth * spec.hostLink.efficiency,
      preBytes: lay && first ? lay.preBytes : 0, postBytes: lay && last ? lay.postBytes : 0,
      timing: lay ? stageTiming(lay, spec, first, last, dtype, mtpDepth) : undefined,
      inFlight: inFlightOf(kind, o.pp, vpp, M, st.stage),
      forwardFlops: new Map([...layerFlops].filter(([l]) => layers.has(l))), // this rank's layers only
      // the event replay of one micro-batch's F then B on this rank: exact at pp=1 (nothing else runs
      // between them); with pp > 1 it ignores the other micro-batches' passes in between (conservative
      // for swap) and the pipeline's propagation of a longer stage (approximate)
      swapWindow: 'microbatch' as const,
    } };
  });
}

/** Predicted cost of `plan` on each pipeline rank (what the planner believes; compare with the executed run). */
export function predictPlan(plan: MemoryPlan | null, descs: SavedActivationDesc[], models: ReturnType<typeof stageCostModels>): PlanCost[] {
  return models.map(({ layers, model }) => {
    const mine = plan ? plan.entries.filter((e) => layers.has(e.layer))
      : descs.filter((d) => layers.has(d.layer)).map((d) => ({ ...d, decision: 'keep' as const }));
    return evaluatePlan({ entries: mine, fullLayers: (plan?.fullLayers ?? []).filter((l) => layers.has(l)), prefetchAhead: plan?.prefetchAhead }, model);
  });
}

/**
 * Predicted step time of a plan (pure): each rank's predicted F, and B + added time (recompute, swap
 * stalls) per micro-batch and chunk, run through the pipeline simulator with the p2p latency of one
 * activation message. At pp=1 this is M × the one-micro-batch replay (exact); with pp > 1 it carries
 * a stage's added time through the schedule, so time added off the critical path hides in bubbles.
 */
export function predictStepSeconds(schedule: Schedule, costs: PlanCost[], p2pSeconds: number, withPlan = true): number {
  const v = schedule.vpp;
  return simulateSchedule(schedule, {
    F: (r) => costs[r].forwardTime / v,
    B: (r) => (costs[r].backwardTime + (withPlan ? costs[r].addedTime : 0)) / v,
    p2pLatency: p2pSeconds,
  }).stepTime;
}

/** The memory plan for the options (pure): fixed policies, or the planner under a budget per rank. */
export function planFor(descs: SavedActivationDesc[], part: Partition, o: TrainStepOptions, kind: ScheduleKind, spec: DeviceSpec,
  layerFlops: Map<number, number>, planner: PlannerResult[] = [], lay?: ExecLayout, mtpDepth = 0, dtype: Dtype = 'bf16'): MemoryPlan | null {
  const stageLayers = part.chunks.map((c) => Array.from({ length: c.end - c.start }, (_, i) => c.start + i));
  if (o.memoryBudget !== undefined) {
    const entries: MemoryPlan['entries'] = [], fullLayers: number[] = [];
    const models = stageCostModels(part, o, kind, spec, layerFlops, lay, mtpDepth, dtype);
    // the swap prefetch distance is one executor setting for every rank: with a single stage the
    // planner picks it (tiny at 30%: d = 2 gives +4.25% vs +4.45% for d = 1); with several it stays 1
    const prefetchAhead = models.length === 1 ? [1, 2] : [1];
    let ahead = 1;
    for (const { layers, model } of models) {
      const mine = descs.filter((d) => layers.has(d.layer));
      if (!mine.length) continue;
      // per-tensor units: finer than (class, layer) groups, a little cheaper at the same budget (tiny:
      // 17.4% vs 18.5% at 30%); the greedy is quadratic in units, so only for a few layers per rank
      // cached: the trainer asks for the same plan every step (same shapes, config, budget, device)
      const res = cachedPlanMemory(mine, { ...model, budgetBytes: o.memoryBudget, granularity: mine.length <= 160 ? 'tensor' : 'class-layer', prefetchAhead });
      planner.push(res);
      entries.push(...res.plan.entries);
      fullLayers.push(...res.plan.fullLayers);
      ahead = res.plan.prefetchAhead ?? 1;
    }
    return { entries, fullLayers, prefetchAhead: ahead };
  }
  const rc = o.recompute ?? 'none', sw = o.swap ?? 'none';
  if (rc === 'none' && sw === 'none') return null;
  const recompute: RecomputePolicy = rc === 'none' ? { recomputeGranularity: 'none' }
    : rc === 'full' ? { recomputeGranularity: 'full', recomputeMethod: 'uniform', recomputeNumLayers: o.recomputeNumLayers ?? 1 }
    : { recomputeGranularity: 'selective', recomputeModules: parseModules(rc) };
  const swap: SwapPolicy = sw === 'none' ? { offloadModules: [] }
    : { offloadModules: parseModules(sw), minOffloadSize: o.minOffloadSize, offloadFraction: o.offloadFraction };
  return makePlan(descs, recompute, swap, stageLayers);
}

export async function runTrainStep(model: MoEGPT, o: TrainStepOptions): Promise<TrainStepResult> {
  const vpp = o.vpp ?? 1, M = o.microBatches.length;
  const kind: ScheduleKind = o.schedule ?? (vpp > 1 ? 'interleaved' : '1f1b');
  const { batch, seqLen } = o.microBatches[0];
  const cluster = o.cluster ?? new ClusterImpl({ spec: o.spec ?? getSpec('ascend-910b'), nodes: 1, devicesPerNode: Math.max(o.pp, 1) });
  const lay = execLayout(model.cfg, batch, seqLen, { ep: o.ep, chargeEmbeddingHead: o.chargeEmbeddingHead });
  const layerCosts = Array.from({ length: model.cfg.numLayers }, (_, l) => lay.layerFlops.get(l) ?? 0);
  const part = partitionLayers(layerCosts, o.pp, vpp);
  const schedule = makeSchedule(kind, o.pp, vpp, M);
  const planner: PlannerResult[] = [];
  const plan = planFor(lay.descs, part, o, kind, cluster.spec, lay.layerFlops, planner, lay, model.cfg.numMtpLayers, cluster.device(0).computeDtype);
  const predicted = predictPlan(plan, lay.descs, stageCostModels(part, o, kind, cluster.spec, lay.layerFlops, lay, model.cfg.numMtpLayers, cluster.device(0).computeDtype));
  const p2p = o.pp > 1 ? sendRecvTime(batch * seqLen * model.cfg.hiddenSize * (cluster.device(0).elementBytes ?? 4), cluster.spec.intraNode) : 0;
  const predictedStepSeconds = predictStepSeconds(schedule, predicted, p2p);
  const ranks = Array.from({ length: o.pp }, (_, r) => r);
  const run = runPipeline({ model, cluster, schedule, partition: part, microBatches: o.microBatches, costs: lay.costs, plan, recomputeFlops: lay.recomputeFlops, ranks });
  const bubble = measureBubble(cluster, ranks);
  return {
    loss: run.loss, grads: run.grads,
    perDevicePeakByCategory: peakByCategory(cluster, ranks), hostSwappedPeakBytes: hostSwappedPeak(cluster),
    peakActivationBytes: run.ledgers.map((l) => l.peakResidentBytes),
    bubbleFraction: bubble.bubbleFraction, stepTimeSeconds: cluster.timeline.makespan,
    trace: cluster.trace(), ganttSvg: o.gantt === false ? '' : await ganttSvg(cluster, ranks),
    plan, planner, predicted, predictedStepSeconds, partition: part, schedule, run, cluster,
  };
}
