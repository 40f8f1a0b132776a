// PP combined with TP/CP/DP/EP in the trainer (`ultramoe train --parallel pp=4,ep=2 --vpp 2
// --micro-batches 8 --schedule interleaved --overlap on`): one PipelineParallelModel (src/parallel/pp)
// on a simulated cluster of pp·tp·cp·dp devices, built once. Each optimizer step:
//   1. the host model's weights (and expert biases) are loaded into the stage that owns them (its
//      devices' shards: experts by EP rank, TP slices), so the executed step starts from the trainer's
//      state;
//   2. the cluster's timeline and peaks are reset and the pipelined step runs (forward, backward,
//      grad sync inside the stages);
//   3. the synchronised gradients are gathered into one full GradStore (experts from the EP group in
//      order, TP shards by index) and the expert biases the stages updated go back to the host.
// The trainer then clips and steps AdamW on the host model exactly as on one device (AdamW is
// element-wise, so this equals per-shard AdamW; its fp32 m and v are charged as 'optimizer' memory to
// the devices that own each shard).
// --memory-budget: the recompute/swap of each stage is chosen by measured planning steps and every step is
// verified against the budget (parallel/pp/stage-budget.ts; planBudget below).
import { tf } from '../backend/tf.ts';
import { Cluster } from '../device/cluster.ts';
import type { DeviceSpec } from '../device/specs.ts';
import type { MoEGPT } from '../model/gpt.ts';
import type { InitMemo } from '../model/init.ts';
import { GradStore } from '../model/module.ts';
import { MoELayer } from '../model/moe/moe-layer.ts';
import type { ParallelModel } from '../parallel/parallel-model.ts';
import { PipelineParallelModel, type PipelineStepReport } from '../parallel/pp/pp-model.ts';
import { epCommHidden, type EPHidden } from '../parallel/pp/ep-hidden.ts';
import { localShard } from '../parallel/reference.ts';
import { shardKind, shardOf } from '../parallel/tp/shard.ts';
import { exposedSwap, hostSwappedPeak, peakByCategory } from '../parallel/exec/report.ts';
import type { PipelineFlags } from './pipeline-flags.ts';
import { budgetLevels, chooseStageLevels, levelName, levelOptions, type StageChoice } from '../parallel/pp/stage-budget.ts';

export interface PPParallelStep {
  loss: number; lmLoss: number; auxLoss: number; zLoss: number;
  grads: GradStore;
  report: PipelineStepReport;
  perDevicePeakByCategory: Record<string, number>[];
  /** per node: peak host bytes of swapped activations this step */
  hostSwappedPeakBytes: number[];
  /** per device (stage order): exposed host-copy seconds this step */
  exposedSwapSeconds: number[];
  epHidden: EPHidden;
  /** --memory-budget: the plan per stage (cached per micro-batch shape) and this step's executed peaks */
  budget: StageBudgetReport | null;
}

type PlannedBudget = Omit<StageBudgetReport, 'executedPeaks'>;

/** The --memory-budget plan of the stages (stage-budget.ts) and what it measured. */
export interface StageBudgetReport {
  budgetBytes: number;
  stages: StageChoice[];
  /** per device (stage order): activation peak without a plan, predicted with the chosen plan, executed this step */
  noPlanPeaks: number[]; predictedPeaks: number[]; executedPeaks: number[];
  /** simulated seconds of the planning step (first step of the shape, same batch and weights) without a plan and with the chosen plan, and the difference */
  noPlanStepSeconds: number; plannedStepSeconds: number; addedSeconds: number;
  /** planning steps run (levels measured, all stages at the same level) */
  levelsMeasured: number;
  /** so far: reruns after a verified step had a stage over budget (that stage moved one level up) */
  adjustments: number;
}

const moeLayersOf = (m: MoEGPT): Map<number, MoELayer> => new Map(m.blocks.flatMap((b, l) => (b.moe instanceof MoELayer ? [[l, b.moe] as [number, MoELayer]] : [])));

/**
 * localShard (parallel/reference.ts) as a tensor, without the host round trip: the shard of `full`
 * rank `rank` of stage `pm` holds (experts: its EP rank's rows; TP: its slice; else `full` itself,
 * whose data the stage variable then shares: tensors are immutable and the trainer assigns new ones).
 */
function shardTensor(pm: ParallelModel, name: string, rank: number, full: tf.Tensor): tf.Tensor {
  const L = pm.layout;
  if (pm.expertParams.has(name)) {
    const epRank = pm.groups.ep.find((g) => g.ranks.includes(rank))!.ranks.indexOf(rank), count = full.shape[0] / L.ep;
    return tf.slice(full, [epRank * count], [count]);
  }
  if (!pm.tpShardedParams.has(name)) return full;
  const kind = name === 'embedding.weight' ? 'row' : name === 'lmHead.weight' ? 'column' : shardKind(name);
  return shardOf(full, kind, L.tp, pm.tpMaps.tpRank(rank));
}

export class PPParallelRunner {
  readonly cluster: Cluster;
  readonly model: PipelineParallelModel;
  private readonly indexCache = new Map<string, Int32Array[]>();

  /** `initMemo`: the seeded initial draws shared with another runner of the same seed (the overlap comparison run) */
  constructor(host: MoEGPT, readonly flags: PipelineFlags, spec: DeviceSpec, globalBatch: number, seqLen: number, microBatches: number, seed: number, initMemo?: InitMemo) {
    const f = flags, inner = f.inner!;
    const world = f.pp * inner.tp * inner.cp * inner.dp;
    this.cluster = new Cluster({ spec, nodes: Math.ceil(world / spec.devicesPerNode), devicesPerNode: Math.min(world, spec.devicesPerNode) });
    this.model = new PipelineParallelModel(host.cfg, this.cluster, {
      layout: { pp: f.pp, tp: inner.tp, cp: inner.cp, dp: inner.dp, ep: inner.ep, etp: 1 }, vpp: f.vpp, schedule: f.schedule, seed,
      dispatcher: f.dispatcher, sequenceParallel: f.sequenceParallel, globalBatch, seqLen, microBatches, overlap: f.overlap, initMemo,
      // full or selective recompute (local classes) / swap per device (parallel/pp/stage-memory.ts; the flags refused the rest)
      ...(f.recompute !== 'none' || f.swap !== 'none' ? { memory: { recompute: f.recompute, recomputeNumLayers: f.recomputeNumLayers, swap: f.swap, minOffloadSize: f.minOffloadSize, offloadFraction: f.offloadFraction } } : {}),
    });
    // fp32 AdamW moments of each device's owned shards (held for the whole run)
    this.model.stages.forEach((pm) => pm.params.forEach((ps, i) => {
      for (const [name, v] of ps.vars) if (pm.owns(name)) pm.cluster.device(i).hbm.alloc('optimizer', `adam ${name}`, 2 * v.size * 4);
    }));
  }

  /** One global batch (M micro-batches of the trainer, concatenated batch-major) through the pipeline. */
  step(host: MoEGPT, mbs: { tokens: Int32Array; targets: Int32Array; batch: number; seqLen: number }[]): PPParallelStep {
    const pp = this.model, M = mbs.length, S = mbs[0].seqLen, B = M * mbs[0].batch;
    const cat = (k: 'tokens' | 'targets') => { const o = new Int32Array(B * S); let off = 0; for (const b of mbs) { o.set(b[k], off); off += b[k].length; } return o; };
    const devices = pp.devices.flat();
    const run = () => {
      this.scatter(host);
      this.cluster.reset();
      pp.clocks.forEach((c) => c.reset());
      return pp.forwardBackward(cat('tokens'), cat('targets'), B, S, { microBatches: M });
    };
    const plan = this.flags.memoryBudget !== undefined ? this.planBudget(this.flags.memoryBudget, mbs[0].batch, S, run) : null;
    let report = run();
    let budget: StageBudgetReport | null = null;
    if (plan) {
      // verify the executed step; a stage over budget (mixed levels change the pipelined timing, later steps
      // the EP token shares) moves to its next level and the step is rerun (results of the rerun kept)
      const levels = budgetLevels(pp.cfg, mbs[0].batch, S);
      for (;;) {
        const executed = peakByCategory(this.cluster, devices).map((c) => c.activations ?? 0);
        const over = plan.stages.filter((c) => c.devices.some((d) => executed[devices.indexOf(d)] > plan.budgetBytes));
        if (!over.length) {
          // the added time on the planning step (same batch and weights as the no-plan run)
          if (Number.isNaN(plan.plannedStepSeconds)) { plan.plannedStepSeconds = report.stepSeconds; plan.addedSeconds = report.stepSeconds - plan.noPlanStepSeconds; }
          budget = { ...plan, stages: plan.stages.map((c) => ({ ...c })), executedPeaks: executed };
          break;
        }
        pp.zeroGrad();
        for (const c of over) {
          const peaks = c.devices.map((d) => executed[devices.indexOf(d)]), i = peaks.indexOf(Math.max(...peaks));
          if (c.level + 1 >= levels.length) throw new Error(`--memory-budget ${plan.budgetBytes} B cannot be met: stage ${c.stage} device ${c.devices[i]} executed an activation peak of ${peaks[i]} B with the most the stages support (${levelName(levels[c.level])}), the best achievable`);
          c.level++; c.plan = levelName(levels[c.level]);
          pp.setStageMemory(c.stage, levelOptions(levels[c.level]));
        }
        plan.adjustments++;
        report = run();
      }
    }
    const grads = this.gatherGrads(host);
    this.gatherBiases(host);
    const out: PPParallelStep = {
      loss: report.loss, lmLoss: report.lmLoss, auxLoss: report.auxLoss, zLoss: report.zLoss, grads, report,
      perDevicePeakByCategory: peakByCategory(this.cluster, devices), epHidden: epCommHidden(this.cluster.timeline, devices),
      hostSwappedPeakBytes: hostSwappedPeak(this.cluster), exposedSwapSeconds: exposedSwap(this.cluster, devices), budget,
    };
    pp.zeroGrad();
    return out;
  }

  private budgetPlans = new Map<string, PlannedBudget>();

  /**
   * The --memory-budget plan for micro-batches of b × S (cached: shapes unchanged across steps). Runs the step
   * at the nested levels of stage-budget.ts (results discarded: grads zeroed, host weights and biases untouched)
   * until every stage fits or the levels are exhausted, then sets each stage's chosen recompute/swap.
   */
  private planBudget(budgetBytes: number, b: number, S: number, run: () => PipelineStepReport): PlannedBudget {
    const key = `${b}x${S}`, cached = this.budgetPlans.get(key);
    if (cached) return cached; // the stages keep the chosen recompute/swap
    const pp = this.model, levels = budgetLevels(pp.cfg, b, S), devices = pp.devices;
    const peaks: number[][][] = [], seconds: number[] = [];
    for (const lv of levels) {
      pp.stages.forEach((_, s) => pp.setStageMemory(s, levelOptions(lv)));
      const rep = run();
      const act = peakByCategory(this.cluster, pp.devices.flat()).map((c) => c.activations ?? 0);
      let off = 0;
      peaks.push(pp.devices.map((d) => { const x = act.slice(off, off + d.length); off += d.length; return x; }));
      seconds.push(rep.stepSeconds);
      pp.zeroGrad();
      if (pp.stages.every((_, s) => peaks.some((k) => Math.max(...k[s]) <= budgetBytes))) break;
    }
    const stages = chooseStageLevels(budgetBytes, levels, peaks, devices);
    stages.forEach((c) => pp.setStageMemory(c.stage, levelOptions(levels[c.level])));
    const plan = { budgetBytes, stages, noPlanPeaks: peaks[0].flat(), predictedPeaks: stages.flatMap((c) => c.predictedPeaks), noPlanStepSeconds: seconds[0], levelsMeasured: peaks.length, adjustments: 0, plannedStepSeconds: NaN, addedSeconds: NaN };
    this.budgetPlans.set(key, plan);
    return plan;
  }

  /** Host weights → the owning stages' shards; host expert biases → the owning stages' replicas. */
  private scatter(host: MoEGPT): void {
    const hostMoe = moeLayersOf(host);
    for (const pm of this.model.stages) {
      pm.params.forEach((ps, i) => {
        for (const [name, v] of ps.vars) if (pm.owns(name)) tf.tidy(() => { v.assign(tf.reshape(shardTensor(pm, name, i, host.params.get(name)), v.shape)); });
      });
      for (const rep of pm.replicas) for (const [l, layer] of moeLayersOf(rep)) if (pm.owns(`layers.${l}.`)) layer.expertBias = Float32Array.from(hostMoe.get(l)!.expertBias);
    }
  }

  /** The full gradient of every host parameter from its (first) owner stage. */
  private gatherGrads(host: MoEGPT): GradStore {
    const out = new GradStore();
    for (const [name, v] of host.params.vars) {
      const pm = this.model.stageOf(name), get = (r: number) => pm.grads[r].get(name);
      if (!get(0)) continue;
      out.grads.set(name, this.gather(pm, name, v.shape, (r) => get(r)!));
    }
    return out;
  }

  private gatherBiases(host: MoEGPT): void {
    const hostMoe = moeLayersOf(host);
    for (const [l, layer] of hostMoe) {
      const pm = this.model.stageOf(`layers.${l}.`);
      layer.expertBias = Float32Array.from(moeLayersOf(pm.replicas[0]).get(l)!.expertBias);
    }
  }

  /** Full tensor of `name` from the per-rank tensors of stage `pm` (experts: EP group 0 in order; TP shards by index). */
  private gather(pm: ParallelModel, name: string, shape: number[], get: (rank: number) => tf.Tensor): tf.Tensor {
    if (pm.expertParams.has(name)) return tf.concat(pm.groups.ep[0].ranks.map(get), 0);
    if (!pm.tpShardedParams.has(name)) return tf.clone(get(0));
    let idx = this.indexCache.get(name);
    if (!idx) {
      const size = shape.reduce((a, b) => a * b, 1);
      const range = tf.tidy(() => tf.reshape(tf.range(0, size, 1, 'float32'), shape));
      idx = pm.groups.tp[0].ranks.map((r) => Int32Array.from(localShard(pm, name, r, range)));
      range.dispose();
      this.indexCache.set(name, idx);
    }
    const flat = new Float32Array(shape.reduce((a, b) => a * b, 1));
    pm.groups.tp[0].ranks.forEach((r, i) => { const d = get(r).dataSync(); for (let j = 0; j < idx![i].length; j++) flat[idx![i][j]] = d[j]; });
    return tf.tensor(flat, shape);
  }

  dispose(): void { this.model.dispose(); }
}
