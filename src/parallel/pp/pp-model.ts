// PipelineParallelModel: pipeline parallelism combined with TP/CP/DP/EP, executed numerically.
//
//   const cluster = new Cluster({ spec: getSpec('ascend-910b'), nodes: 1 });
//   const m = new PipelineParallelModel(cfg, cluster, { layout: 'pp=4,ep=2', vpp: 2, schedule: 'interleaved', seed: 1 });
//   const r = m.forwardBackward(tokens, targets, globalBatch, seqLen, { microBatches: 8 });
//   // m.stages[s].grads[i]: synchronised gradients of stage s, local rank i (owned parameters only)
//
// Layout (Megatron rank order, pp slowest): world = pp × n with n = tp·cp·dp; stage s is devices
// [s·n, (s+1)·n) and runs an ordinary lockstep ParallelModel over them (stage-cluster.ts view; EP
// folds the stage's dp ranks as without pp). Layers are split into pp·vpp model chunks balanced by
// FLOPs (partitionLayers, the same partition as the single-device PP executor); stage s owns the
// parameters of its chunks (plus the embedding on the first chunk, the head on the last, paramOwners).
// The schedule's F(m, chunk)/B(m, chunk) run the ParallelModel phases (pm-phases.ts) of the chunk's
// layers for micro-batch m on every device of the stage; device i of a stage exchanges activations
// and gradients with device i of the neighbouring stage (pp-driver.ts). Gradients accumulate over
// the micro-batches; DP / expert-DP / TP×DP sync once per step inside each stage (finishStep); a tied
// embedding is then all-reduced between the first and last stage. Same objective, seeds and data
// shards as ParallelModel.forwardBackward, so loss and gradients equal single-device training.
import { tf } from '../../backend/tf.ts';
import type { Cluster } from '../../device/cluster.ts';
import type { ModelConfig } from '../../model/config.ts';
import { InitMemo } from '../../model/init.ts';
import type { ForwardContext, RouterStats } from '../../model/module.ts';
import { createCPAttention, cpShard } from '../cp/index.ts';
import type { DispatcherKind } from '../ep/ep-moe.ts';
import { execLayout } from '../exec/layout.ts';
import { measureBubble } from '../exec/report.ts';
import { parseLayout, resolveLayout, type ParallelSpec, type ResolvedLayout } from '../layout.ts';
import { ParallelModel, type ParallelStepReport } from '../parallel-model.ts';
import { partitionLayers, type Partition } from '../pipeline/partition.ts';
import { schedule1F1B, scheduleGPipe, scheduleInterleaved, type Schedule, type ScheduleName } from '../pipeline/schedule.ts';
import { PipeClock } from './pipe-clock.ts';
import { GapFiller } from './gap-fill.ts';
import { schedule1F1BOverlap } from './overlap-schedule.ts';
import { drivePipeline, type ComputeSpan } from './pp-driver.ts';
import { disposeMicroBatch, embedBackward, embedForward, headBackward, headForward, layerBackward, layerForward, newMicroBatch, type MicroBatchState } from '../pm-phases.ts';
import { stageCluster } from './stage-cluster.ts';
import { StageMemory, type StageMemoryOptions } from './stage-memory.ts';
import { syncTiedEmbedding, stepLoss } from './pp-step.ts';

export interface PipelineParallelOptions {
  /** 'pp=4,ep=2' (tp, cp, dp, ep inside each stage) */
  layout: string | ParallelSpec;
  vpp?: number;
  schedule?: ScheduleName;
  seed: number;
  dispatcher?: DispatcherKind;
  sequenceParallel?: boolean;
  globalBatch?: number; seqLen?: number; microBatches?: number;
  /** adaptive pipe overlap on the executed timeline (pipe-clock.ts, gap-fill.ts, pp-driver.ts pairs); numerics unchanged */
  overlap?: boolean;
  /** full or selective recompute / swap per device (stage-memory.ts; classes of stage-memory-rules.ts); numerics unchanged */
  memory?: StageMemoryOptions;
  /** random draws shared with other models of the same seed (the trainer's second runner); default: one memo for all stages */
  initMemo?: InitMemo;
}

export interface PipelineStepReport extends ParallelStepReport {
  schedule: Schedule;
  spans: ComputeSpan[];
  /** executed timeline: (step − mean compute busy) / mean compute busy over all devices */
  bubbleFraction: number;
  /** simulated seconds of this step (first compute start to last compute end) */
  stepSeconds: number;
  /** F/B pairs issued together (overlap on) */
  pairs: number;
}

interface InFlight { st: MicroBatchState; chunksLeft: number }

export class PipelineParallelModel {
  readonly layout: ResolvedLayout;
  /** the layout of one stage (pp = 1) */
  readonly inner: ResolvedLayout;
  readonly stages: ParallelModel[] = [];
  readonly clocks: PipeClock[] = [];
  /** devices[s][i]: global device of local rank i of stage s */
  readonly devices: number[][] = [];
  readonly partition: Partition;
  readonly vpp: number;
  readonly scheduleName: ScheduleName;
  readonly overlap: boolean;
  readonly filler: GapFiller | null;
  /** per stage: the recompute/swap executor of its devices (null without opts.memory) */
  readonly memory: (StageMemory | null)[] = [];

  constructor(readonly cfg: ModelConfig, readonly cluster: Cluster, readonly opts: PipelineParallelOptions) {
    const spec = typeof opts.layout === 'string' ? parseLayout(opts.layout) : { ...opts.layout };
    // 'pp=4,ep=2': EP folds the stage's dp ranks, so an unspecified dp defaults to ep/(tp·cp) (parallel-flags.ts)
    if (typeof opts.layout === 'string' && !/\bdp=/.test(opts.layout) && spec.ep * spec.etp > spec.tp * spec.cp && (spec.ep * spec.etp) % (spec.tp * spec.cp) === 0) spec.dp = (spec.ep * spec.etp) / (spec.tp * spec.cp);
    this.layout = resolveLayout(spec, { model: cfg, clusterDevices: cluster.size, globalBatch: opts.globalBatch, seqLen: opts.seqLen, microBatches: opts.microBatches, supported: { etp: 1 } });
    const L = this.layout, n = L.world / L.pp;
    this.inner = { ...L, pp: 1, world: n };
    this.vpp = opts.vpp ?? 1;
    this.scheduleName = opts.schedule ?? (this.vpp > 1 ? 'interleaved' : '1f1b');
    const problems: string[] = [];
    if (this.vpp > 1 && this.scheduleName !== 'interleaved') problems.push(`schedule ${this.scheduleName} needs vpp 1 (got ${this.vpp})`);
    if (problems.length) throw new Error(`PipelineParallelModel: ${problems.join('; ')}`);
    this.overlap = !!opts.overlap;
    this.filler = this.overlap ? new GapFiller(cluster.timeline) : null;
    const lay = execLayout(cfg, 1, 1, {});
    this.partition = partitionLayers(Array.from({ length: cfg.numLayers }, (_, l) => lay.layerFlops.get(l) ?? 0), L.pp, this.vpp);
    const memo = opts.initMemo ?? new InitMemo();   // every stage's replicas start from the same seeded weights, drawn once
    for (let s = 0; s < L.pp; s++) {
      const devs = Array.from({ length: n }, (_, i) => s * n + i), view = stageCluster(cluster, devs, this.filler), clock = new PipeClock(view, this.filler);
      this.devices.push(devs); this.clocks.push(clock);
      this.stages.push(new ParallelModel(cfg, view, {
        layout: this.inner, seed: opts.seed, dispatcher: opts.dispatcher, sequenceParallel: opts.sequenceParallel,
        globalBatch: opts.globalBatch, seqLen: opts.seqLen, microBatches: opts.microBatches, clock, owns: (name) => this.ownerStages(name).has(s), initMemo: memo,
      }));
      this.memory.push(null);
      this.setStageMemory(s, opts.memory ?? null);
    }
    if (!opts.initMemo) memo.dispose();
  }

  /** Replace stage s's recompute/swap (null or nothing selected: none); e.g. the --memory-budget plan per stage (stage-budget.ts). */
  setStageMemory(s: number, opts: StageMemoryOptions | null): void {
    const pm = this.stages[s], cluster = this.cluster;
    if (opts?.recompute === 'full' && this.inner.cp > 1) throw new Error('PipelineParallelModel: --recompute full with cp > 1 inside the stages is not executed (the context-parallel attention replay is untested)');
    const chunkLayers = this.partition.chunks.map((c) => Array.from({ length: c.end - c.start }, (_, i) => c.start + i));
    const mem = opts ? new StageMemory(this.cfg, pm, this.clocks[s], opts, (q) => (this.filler ? this.filler.place(q) : cluster.timeline.schedule(q)), chunkLayers) : null;
    pm.setMemory(mem?.active ? mem : null);
    this.memory[s] = mem?.active ? mem : null;
  }

  /** The stages that hold parameter `name` (exec/pipeline-executor.ts paramOwners: layer's stage, embedding first (and last when tied), the rest last). */
  ownerStages(name: string): Set<number> {
    const part = this.partition, C = part.chunks.length, owners = new Set<number>();
    const m = /^layers\.(\d+)\./.exec(name);
    if (m) owners.add(part.stageOfLayer[Number(m[1])]);
    else if (name.startsWith('embedding.')) { owners.add(part.chunks[0].stage); if (this.cfg.tieEmbeddings) owners.add(part.chunks[C - 1].stage); }
    else owners.add(part.chunks[C - 1].stage);
    return owners;
  }

  /** The stage whose gradient of `name` is the reference one (the first owner). */
  stageOf(name: string): ParallelModel { return this.stages[Math.min(...this.ownerStages(name))]; }

  schedule(M: number): Schedule {
    const pp = this.layout.pp;
    if (this.scheduleName === 'interleaved') return scheduleInterleaved(pp, this.vpp, M);
    if (this.scheduleName === 'gpipe') return scheduleGPipe(pp, M);
    return this.overlap ? schedule1F1BOverlap(pp, M) : schedule1F1B(pp, M);   // overlap: one more warm-up forward (overlap-schedule.ts)
  }

  /**
   * One step over the global batch (tokens/targets [globalBatch·seqLen], batch-major): the schedule's
   * micro-batches through the stages; gradients synchronised on return. Call zeroGrad() between steps.
   */
  forwardBackward(tokens: Int32Array, targets: Int32Array, globalBatch: number, seqLen: number, opts: { microBatches?: number; seed?: number } = {}): PipelineStepReport {
    const L = this.inner, M = opts.microBatches ?? 1, P = this.layout.pp, n = L.world, s0pm = this.stages[0];
    resolveLayout(this.layout, { model: this.cfg, globalBatch, seqLen, microBatches: M, clusterDevices: this.cluster.size, supported: { etp: 1 } });
    if (tokens.length !== globalBatch * seqLen || targets.length !== tokens.length) throw new Error(`tokens/targets must have globalBatch·seqLen = ${globalBatch * seqLen} entries`);
    const b = globalBatch / (L.dp * M), S = seqLen / L.cp, C = P * this.vpp;
    const scales = s0pm.auxScales(M);
    const shard = (a: Int32Array, m: number, r: number) => {
      const o = (s0pm.rankIn(s0pm.groups.dp, r) * M + m) * b * seqLen, seqs = a.subarray(o, o + b * seqLen);
      return L.cp > 1 ? cpShard(seqs, b, seqLen, L.cp, s0pm.rankIn(s0pm.groups.cp, r)) : seqs;
    };
    const cpAttn = this.stages.map((pm) => (L.cp > 1 ? createCPAttention(this.cfg, pm.cluster, pm.groups.cp, pm.clock, seqLen) : null));
    const ctxs: ForwardContext[][][] = this.stages.map(() => Array.from({ length: M }, (_, m) =>
      Array.from({ length: n }, () => ({ training: true, lossScale: 1 / (L.cp * L.dp * M), seed: (opts.seed ?? 1) * 1000 + m, routerStats: [] as RouterStats[], recordStats: true }))));
    const inflight = this.stages.map(() => new Map<number, InFlight>()), self = this;
    const ce: number[][] = new Array(M);
    const chunkOf = (r: number, chunk: number) => this.partition.chunks[chunk * P + r];
    const state = (r: number, m: number): InFlight => {
      let f = inflight[r].get(m);
      if (!f) inflight[r].set(m, (f = { st: newMicroBatch(`mb${m}.`, b, S, ctxs[r][m], scales, cpAttn[r]), chunksLeft: this.vpp }));
      return f;
    };
    try {
      const sched = this.schedule(M);
      const { spans, pairs } = drivePipeline(this.cluster, sched, this.partition, {
        devices: this.devices,
        readyAt: (r, m) => {
          const c = this.clocks[r];
          c.use(m); c.wait([]);
          const t = Math.max(...this.devices[r].map((_, i) => c.readyAt(i)));
          return c.overlap ? t : Math.max(t, ...this.devices[r].map((d) => this.cluster.timeline.streamFree(d, 'compute')));
        },
        lastEvents: (r, m) => { const c = this.clocks[r]; c.use(m); c.wait([]); return this.devices[r].map((_, i) => c.lastOf(i)); },
        forward: function* (r, m, chunk, input) {
          const pm = self.stages[r], ch = chunkOf(r, chunk), f = state(r, m), c = self.clocks[r], waits = input?.events ?? [];
          const on = () => { c.use(m); c.wait(waits); };
          on();
          let h = ch.index === 0 ? embedForward(pm, f.st, (i) => shard(tokens, m, i)) : input!.tensors;
          for (let l = ch.start; l < ch.end; l++) { on(); h = layerForward(pm, f.st, l, h); yield; }
          on();
          if (ch.index < C - 1) return h;
          ce[m] = headForward(pm, f.st, h, (i) => shard(targets, m, i));
          return null;
        },
        backward: function* (r, m, chunk, input) {
          const pm = self.stages[r], ch = chunkOf(r, chunk), f = inflight[r].get(m), c = self.clocks[r], waits = input?.events ?? [];
          if (!f) throw new Error(`stage ${r}: backward of micro-batch ${m} before its forward`);
          const on = () => { c.use(m); c.wait(waits); };
          on();
          // start reloading the chunk's last layer's swapped entries while the head's backward runs
          if (ch.end > ch.start) self.memory[r]?.prefetch(f.st, ch.end - 1);
          let d = ch.index === C - 1 ? headBackward(pm, f.st) : input!.tensors;
          for (let l = ch.end - 1; l >= ch.start; l--) { on(); d = layerBackward(pm, f.st, l, d); yield; }
          on();
          const out = ch.index > 0 ? d : null;
          if (ch.index === 0) embedBackward(pm, f.st, d);
          if (--f.chunksLeft === 0) { disposeMicroBatch(f.st); inflight[r].delete(m); }
          return out;
        },
      }, { overlap: this.overlap, place: this.filler ? (r) => this.filler!.place(r) : undefined, beginPair: this.filler ? (r, t) => this.filler!.begin(this.devices[r], t) : undefined, endPair: this.filler ? () => this.filler!.end() : undefined });
      for (const pm of this.stages) pm.finishStep();
      if (this.cfg.tieEmbeddings && P > 1) syncTiedEmbedding(this);
      const rep = stepLoss(this, ce, ctxs, M, scales);
      const allDevs = this.devices.flat(), bub = measureBubble(this.cluster, allDevs);
      return { ...rep, schedule: sched, spans, pairs, bubbleFraction: bub.bubbleFraction, stepSeconds: bub.stepTime };
    } finally {
      for (const mp of inflight) for (const f of mp.values()) disposeMicroBatch(f.st);
    }
  }

  /** sqrt(Σ‖g‖²) of the full gradient: each stage's owned shards once (a tied embedding once). */
  globalGradNorm(): number {
    let sq = 0;
    this.stages.forEach((pm) => { sq += pm.globalGradNorm() ** 2; });
    if (this.cfg.tieEmbeddings && this.layout.pp > 1) {
      // both ends hold the summed tied gradient: count the last stage's copy out
      const last = this.stages[this.partition.chunks[this.partition.chunks.length - 1].stage];
      const g = last.grads[0].get('embedding.weight');
      if (g) { const v = tf.tidy(() => tf.sum(tf.square(g))); sq -= v.dataSync()[0]; v.dispose(); }
    }
    return Math.sqrt(Math.max(0, sq));
  }

  zeroGrad(): void { for (const pm of this.stages) pm.zeroGrad(); }

  dispose(): void { for (const pm of this.stages) pm.dispose(); }
}
