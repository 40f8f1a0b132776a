// The local training loop (nanoGPT train.py shape): per optimizer step, M micro-batches of
// forward+backward accumulate gradients (ctx.lossScale = 1/M), then global-norm clipping, AdamW at
// the scheduled learning rate, and the end-of-global-batch hooks (expert-bias update, global-aux
// reset). Every step yields a metrics row; validation runs every `evalEvery` steps.
import { GradStore, defaultContext, type RouterStats } from '../model/module.ts';
import { BatchSampler, type Dataset, type SamplerState } from './data.ts';
import { expertLoads, loadSnapshot, memoryStats, type LoadSnapshot, type StepRow } from './metrics.ts';
import { lossNumbers, type TrainableModel } from './model.ts';
import { AdamW, DEFAULT_ADAMW, getLr, globalGradNorm, type AdamWConfig } from './optimizer.ts';
import type { ParallelEngine } from './parallel.ts';
import type { PipelineEngine } from './pipeline.ts';
import type { MoEGPT } from '../model/gpt.ts';

export interface TrainConfig {
  steps: number;          // optimizer steps of the whole run (the LR schedule's horizon)
  batch: number;          // sequences per micro-batch
  seqLen: number;
  microBatches: number;   // M: gradient accumulation
  lr: number;
  minLr: number;
  warmupSteps: number;
  gradClip: number;       // 0 = off
  adamw: AdamWConfig;
  seed: number;
  evalEvery: number;      // 0 = only at the end
  evalBatches: number;
}

export const defaultTrainConfig = (o: Partial<TrainConfig> = {}): TrainConfig => ({
  steps: 100, batch: 8, seqLen: 64, microBatches: 1, lr: 3e-3, minLr: 3e-4, warmupSteps: 10, gradClip: 1,
  adamw: DEFAULT_ADAMW, seed: 1, evalEvery: 0, evalBatches: 4, ...o,
});

/** Trainer state beyond weights and optimizer moments, as saved in a checkpoint. */
export interface TrainerState { step: number; sampler: SamplerState; rows: StepRow[]; loads: LoadSnapshot[] }

export class Trainer {
  /** Optimizer steps completed. */
  step = 0;
  readonly rows: StepRow[] = [];
  readonly loads: LoadSnapshot[] = [];
  readonly opt: AdamW;
  readonly sampler: BatchSampler;
  /** Tokens per expert of every MoE layer per step [step][layer][expert] (logical experts), when recording. */
  readonly loadTrace: number[][][] | null;

  constructor(
    readonly model: TrainableModel,
    readonly data: Dataset,
    readonly cfg: TrainConfig,
    /** Model FLOPs per token (fwd + bwd) and the machine's fp32 peak, for local MFU. */
    readonly flopsPerToken: number,
    readonly peakFlops: number,
    readonly topk = 1,
    /** Parallel step engine (src/train/parallel.ts): `model` is then the unsharded host copy used for
     *  evaluation and checkpoints, and `opt` receives the gathered AdamW state before a checkpoint. */
    readonly engine: ParallelEngine | null = null,
    recordLoads = false,
    /** Pipeline / recompute / swap executor (src/train/pipeline.ts): steps go through `trainStepAsync`. */
    readonly pipeline: PipelineEngine | null = null,
  ) {
    this.loadTrace = recordLoads ? [] : null;
    this.opt = new AdamW(model.params, cfg.adamw);
    this.sampler = new BatchSampler(data.train, cfg.batch, cfg.seqLen, cfg.seed, data.trainStarts);
  }

  lrAt(step: number): number {
    const c = this.cfg;
    return getLr(step, { lr: c.lr, minLr: c.minLr, warmupSteps: Math.min(c.warmupSteps, c.steps), decaySteps: c.steps });
  }

  /** Seeds ≥ 1 (tfjs ignores seed 0, tfjs-notes P19), distinct per (step, micro-batch). */
  private seedFor(step: number, micro: number): number {
    return ((this.cfg.seed * 7919 + step * this.cfg.microBatches + micro) % 2147483646) + 1;
  }

  /** One optimizer step over M micro-batches; returns (and records) its metrics row. */
  trainStep(): StepRow {
    if (this.pipeline) throw new Error('Trainer.trainStep: a pipeline run steps asynchronously, use trainStepAsync()');
    const M = this.cfg.microBatches, t0 = performance.now();
    const grads = new GradStore();
    const routerStats: RouterStats[] = [];
    const sum = { loss: 0, lmLoss: 0, auxLoss: 0, zLoss: 0 };
    let tokens = 0;
    try {
      let gradNorm: number, lr: number, sim: Partial<StepRow> = {};
      if (this.engine) {
        // the M micro-batches form the global batch, micro-batch-major (ParallelModel's DP/M split)
        const bs = Array.from({ length: M }, () => this.sampler.next());
        const cat = (k: 'tokens' | 'targets') => { const o = new Int32Array(bs.reduce((n, b) => n + b[k].length, 0)); let off = 0; for (const b of bs) { o.set(b[k], off); off += b[k].length; } return o; };
        lr = this.lrAt(this.step);
        const r = this.engine.step(cat('tokens'), cat('targets'), M * bs[0].batch, bs[0].seqLen, M, lr, this.cfg.gradClip, this.step + 1);
        sum.loss = r.loss; sum.lmLoss = r.lmLoss; sum.auxLoss = r.auxLoss; sum.zLoss = r.zLoss;
        gradNorm = r.gradNorm; tokens = M * bs[0].tokens.length;
        routerStats.push(...r.routerStats);
        sim = { simStepSeconds: r.simSeconds, simMoeSeconds: r.moeSeconds, deviceLoadMaxOverMean: Math.max(0, ...r.deviceMaxOverMean) };
      } else {
      for (let mb = 0; mb < M; mb++) {
        const b = this.sampler.next();
        const ctx = defaultContext({ training: true, lossScale: 1 / M, seed: this.seedFor(this.step, mb), routerStats, recordStats: true });
        const p = lossNumbers(this.model.forwardBackward(b.tokens, b.targets, b.batch, b.seqLen, ctx, grads));
        sum.loss += p.loss / M; sum.lmLoss += p.lmLoss / M; sum.auxLoss += p.auxLoss / M; sum.zLoss += p.zLoss / M;
        tokens += b.tokens.length;
      }
      gradNorm = globalGradNorm(grads);
      const clip = this.cfg.gradClip > 0 && gradNorm > this.cfg.gradClip ? this.cfg.gradClip / (gradNorm + 1e-6) : 1;
      lr = this.lrAt(this.step);
      this.opt.step(grads, lr, clip);
      // End of the global batch: aux-loss-free bias update, then the global aux tracker resets.
      for (const layer of this.model.moeLayers()) { layer.updateExpertBias(); layer.resetGlobalAux(); }
      }
      return this.finishRow(t0, sum, gradNorm, lr, tokens, routerStats, sim);
    } finally {
      grads.dispose();
    }
  }

  /** One optimizer step through the pipeline executor (or `trainStep` when there is none). */
  async trainStepAsync(): Promise<StepRow> {
    if (!this.pipeline) return this.trainStep();
    const M = this.cfg.microBatches, t0 = performance.now();
    const bs = Array.from({ length: M }, () => this.sampler.next());
    const r = await this.pipeline.step(this.model as unknown as MoEGPT, bs.map((b) => ({ tokens: b.tokens, targets: b.targets, batch: b.batch, seqLen: b.seqLen })));
    try {
      const gradNorm = globalGradNorm(r.grads);
      const clip = this.cfg.gradClip > 0 && gradNorm > this.cfg.gradClip ? this.cfg.gradClip / (gradNorm + 1e-6) : 1;
      const lr = this.lrAt(this.step);
      this.opt.step(r.grads, lr, clip);
      for (const layer of this.model.moeLayers()) { layer.updateExpertBias(); layer.resetGlobalAux(); }
      const tokens = bs.reduce((a, b) => a + b.tokens.length, 0);
      return this.finishRow(t0, { loss: r.loss, lmLoss: r.lmLoss, auxLoss: r.auxLoss, zLoss: r.zLoss }, gradNorm, lr, tokens, r.routerStats,
        { simStepSeconds: r.simSeconds, bubbleFraction: r.bubbleFraction });
    } finally {
      r.grads.dispose();
    }
  }

  /** Metrics row of a finished optimizer step; records it, evaluates when due. */
  private finishRow(t0: number, sum: { loss: number; lmLoss: number; auxLoss: number; zLoss: number }, gradNorm: number, lr: number, tokens: number,
    routerStats: RouterStats[], sim: Partial<StepRow>): StepRow {
      const secs = (performance.now() - t0) / 1000;
      const loads = expertLoads(routerStats, this.topk);
      const worst = (f: (l: (typeof loads)[number]) => number) => loads.reduce((m, l) => Math.max(m, f(l)), 0);
      const row: StepRow = {
        step: this.step + 1, ...sum, gradNorm, lr,
        tokensPerSecond: tokens / secs,
        localMfu: (this.flopsPerToken * tokens) / secs / this.peakFlops,
        stepSeconds: secs,
        expertLoadMaxOverMean: worst((l) => l.maxOverMean),
        expertLoadCv: worst((l) => l.cv),
        expertDropRate: worst((l) => l.dropRate),
        valLoss: null,
        layers: loads.map((l) => ({ layer: l.layer, maxOverMean: l.maxOverMean, cv: l.cv, dropRate: l.dropRate })),
        ...memoryStats(),
        ...sim,
      };
      this.loadTrace?.push(loads.map((l) => l.tokensPerExpert));
      this.step++;
      if (loads.length) this.loads.push(loadSnapshot(this.step, loads));
      if (this.cfg.evalEvery > 0 && this.step % this.cfg.evalEvery === 0) row.valLoss = this.evaluate();
      this.rows.push(row);
      return row;
  }

  /** Mean loss over a fixed set of validation batches (the same windows at every evaluation). */
  evaluate(): number {
    this.engine?.syncHost();
    const val = new BatchSampler(this.data.val, this.cfg.batch, this.cfg.seqLen, `val-${this.cfg.seed}`, this.data.valStarts);
    let s = 0;
    for (let i = 0; i < this.cfg.evalBatches; i++) {
      const b = val.next();
      s += lossNumbers(this.model.forwardLoss(b.tokens, b.targets, b.batch, b.seqLen)).lmLoss;
    }
    return s / this.cfg.evalBatches;
  }

  /** Make `model` and `opt` hold the full training state (gathers the shards of a parallel run). */
  syncForCheckpoint(): void { this.engine?.syncHost(this.opt); }

  state(): TrainerState { return { step: this.step, sampler: this.sampler.state(), rows: this.rows, loads: this.loads }; }

  restore(s: TrainerState): void {
    this.step = s.step;
    this.sampler.restore(s.sampler);
    this.rows.splice(0, this.rows.length, ...s.rows);
    this.loads.splice(0, this.loads.length, ...s.loads);
  }

  dispose(): void { this.opt.dispose(); }
}
