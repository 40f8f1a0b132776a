// Parallel training on simulated devices (`ultramoe train --parallel tp=2,ep=4,dp=2 --device ascend-910b`):
// the trainer's step engine over src/parallel's ParallelModel. Same data, schedule and clipping as the
// single-device trainer: the M micro-batches of `batch` sequences form the global batch (batch-major,
// micro-batch m = sequences [m·batch, (m+1)·batch)); the global gradient norm is pm.globalGradNorm()
// (or, with the distributed optimizer, the norm of the group-summed unsynchronised gradients).
//
// The trainer keeps a single-device "host" MoEGPT: syncHost() gathers the shards into it (experts from
// the EP ranks in logical order whatever the placement, TP shards by index), so evaluation, sampling,
// exact match and checkpoints use the unsharded model, and a parallel checkpoint is an ordinary
// single-device checkpoint (resumable on one device, or in parallel: scatterFromHost()).
import { tf } from '../backend/tf.ts';
import type { ModelConfig } from '../model/config.ts';
import type { MoEGPT } from '../model/gpt.ts';
import type { RouterStats } from '../model/module.ts';
import { createParallelModel, DistributedAdamW, localShard, type ParallelModel } from '../parallel/index.ts';
import type { Cluster } from '../device/cluster.ts';
import { uniqueGroups } from '../parallel/dp/grad-sync.ts';
import { PlacementController } from '../parallel/placement/controller.ts';
import { epPlacementSpec, migrateLayer, migrateShardedMoments, type MigrationReport, type BankTensors } from '../parallel/placement/executor.ts';
import type { SlotMove } from '../parallel/placement/migration.ts';
import { balance, layerFromSlots, type SolverName } from '../parallel/placement/types.ts';
import { expandBanks, replicaNormExcess, sumReplicaGrads } from '../parallel/placement/replica-banks.ts';
import { MoELayer } from '../model/moe/moe-layer.ts';
import { AdamW, type AdamWConfig } from './optimizer.ts';
import type { ParallelFlags } from './parallel-flags.ts';

export interface ParallelStepResult {
  loss: number; lmLoss: number; auxLoss: number; zLoss: number; gradNorm: number;
  /** every rank's router statistics (logical experts) */
  routerStats: RouterStats[];
  /** simulated seconds of this step (timeline makespan delta) */
  simSeconds: number;
  /** simulated expert compute of the slowest EP rank, summed over MoE layers (fwd + bwd) */
  moeSeconds: number;
  /** per MoE layer: device-load max/mean under the placement in force */
  deviceMaxOverMean: number[];
}

export interface PlacementState { solver: SolverName; period: number; controller: PlacementController; migrations: (MigrationReport & { step: number })[] }

export class ParallelEngine {
  readonly pm: ParallelModel;
  readonly cluster: Cluster;
  readonly opts: AdamW[] = [];
  readonly dopt: DistributedAdamW | null = null;
  readonly placement: PlacementState | null = null;
  /** MoE block indices in order */
  readonly moeBlocks: number[];
  private readonly indexCache = new Map<string, Int32Array[]>();

  constructor(readonly cfg: ModelConfig, readonly flags: ParallelFlags, globalBatch: number, seqLen: number, microBatches: number, seed: number, adamw: AdamWConfig, readonly host: MoEGPT) {
    const { model, cluster } = createParallelModel(cfg, {
      parallel: flags.layout, device: flags.device, hbmBytes: flags.hbmBytes ?? undefined, seed, dispatcher: flags.dispatcher,
      distributedOptimizer: flags.distributedOptimizer, sequenceParallel: flags.sequenceParallel, globalBatch, seqLen, microBatches,
    });
    this.pm = model; this.cluster = cluster;
    this.moeBlocks = host.blocks.flatMap((b, l) => (b.moe ? [l] : []));
    if (flags.placement) {
      const controller = new PlacementController({
        // the EP group's node layout and the router's groups: hierarchical solvers keep groups within a node
        spec: epPlacementSpec(model, { redundantSlots: flags.placement.redundantSlots }),
        numLayers: this.moeBlocks.length, solver: flags.placement.solver, period: flags.placement.period, threshold: flags.placement.threshold,
      });
      this.placement = { solver: flags.placement.solver, period: flags.placement.period, controller, migrations: [] };
      this.moeBlocks.forEach((l, i) => {
        // redundant slots: banks of R/P slots under the controller's initial (static) slot table
        if (flags.placement!.redundantSlots > 0) expandBanks(model, l, controller.placement[i].physicalToLogical);
        model.moe.placements.set(l, controller.placement[i]);
      });
    }
    if (flags.distributedOptimizer) this.dopt = new DistributedAdamW(model, adamw);
    else model.params.forEach((p, r) => {
      this.opts.push(new AdamW(p, adamw));
      const dev = cluster.device(r);   // fp32 moments m and v
      for (const [name, v] of p.vars) dev.hbm.alloc('optimizer', `adam ${name}`, 2 * v.size * 4);
    });
  }

  /** One optimizer step over the global batch [globalBatch·seqLen] (M micro-batches per DP rank). */
  step(tokens: Int32Array, targets: Int32Array, globalBatch: number, seqLen: number, M: number, lr: number, gradClip: number, step: number): ParallelStepResult {
    const pm = this.pm, t0 = this.cluster.timeline.makespan;
    const r = pm.forwardBackward(tokens, targets, globalBatch, seqLen, { microBatches: M });
    let gradNorm: number;
    if (this.replicated()) {
      // replicas: sum their gradients, count each logical expert once in the norm
      let excess = 0;
      for (const l of this.moeBlocks) {
        const slots = pm.moe.placements.get(l)!.physicalToLogical;
        sumReplicaGrads(pm, l, slots);
        excess += replicaNormExcess(pm, l, slots);
      }
      gradNorm = Math.sqrt(Math.max(0, pm.globalGradNorm() ** 2 - excess));
    } else gradNorm = this.dopt ? this.unsyncedGradNorm() : pm.globalGradNorm();
    const clip = gradClip > 0 && gradNorm > gradClip ? gradClip / (gradNorm + 1e-6) : 1;
    if (this.dopt) { if (clip !== 1) this.scaleGrads(clip); this.dopt.step(lr); }
    else this.opts.forEach((o, rank) => o.step(pm.grads[rank], lr, clip));
    pm.zeroGrad();
    const routerStats = r.routerStats.flat();
    const perLayer = this.moeBlocks.map((l) => {
      const tpe = new Float64Array(this.cfg.moe.numExperts);
      for (const s of routerStats) if (s.layer === l) s.tokensPerExpert.forEach((c, e) => { tpe[e] += c; });
      return tpe;
    });
    const { moeSeconds, deviceMaxOverMean } = this.expertTime(perLayer);
    if (this.placement) this.replace(perLayer, step);
    return { loss: r.loss, lmLoss: r.lmLoss, auxLoss: r.auxLoss, zLoss: r.zLoss, gradNorm, routerStats, simSeconds: this.cluster.timeline.makespan - t0, moeSeconds, deviceMaxOverMean };
  }

  private replicated(): boolean { return (this.placement?.controller.spec.numReplicas ?? 0) > this.cfg.moe.numExperts; }

  /** Expert compute time of the slowest EP rank per layer (fwd 3 + bwd 6 GEMMs of [rows, F, H]) under the placement in force. */
  private expertTime(perLayer: Float64Array[]): { moeSeconds: number; deviceMaxOverMean: number[] } {
    const ep = this.pm.layout.ep, edp = this.pm.layout.world / ep, E = this.cfg.moe.numExperts, H = this.cfg.hiddenSize, F = this.cfg.moe.expertHiddenSize;
    const dev = this.cluster.device(0);
    let moeSeconds = 0;
    const deviceMaxOverMean = perLayer.map((tpe, i) => {
      const slots = this.pm.moe.placements.get(this.moeBlocks[i])?.physicalToLogical ?? Array.from({ length: E }, (_, e) => e);
      const rows = new Array<number>(ep).fill(0), count = new Array<number>(E).fill(0);
      slots.forEach((e) => { count[e]++; });
      slots.forEach((e, p) => { rows[Math.floor(p / (slots.length / ep))] += tpe[e] / count[e] / edp; });
      const max = Math.max(...rows);
      moeSeconds += dev.costOf({ gemm: [Math.round(max), 9 * F, H] });
      return balance(rows).maxOverMean;
    });
    return { moeSeconds, deviceMaxOverMean };
  }

  /** Feed the controller; migrate weights and Adam moments of every re-placed layer. */
  private replace(perLayer: Float64Array[], step: number): void {
    const pl = this.placement!, moe = this.pm.moe;
    const prev = pl.controller.placement.map((x) => x.physicalToLogical);
    const round = pl.controller.observe(perLayer);
    if (!round) return;
    for (const d of round.layers) {
      if (!d.replace) continue;
      const l = this.moeBlocks[d.layer], next = pl.controller.placement[d.layer];
      const rep = this.migrate(l, prev[d.layer], next.physicalToLogical, d.moves);
      moe.placements.set(l, next);
      pl.migrations.push({ ...rep, step });
    }
  }

  /** Force a re-placement of MoE layer i (tests, examples) to the slot table `physicalToLogical` (same R). */
  forcePlacement(i: number, physicalToLogical: number[], step = 0): MigrationReport {
    const moe = this.pm.moe, l = this.moeBlocks[i], E = this.cfg.moe.numExperts, ep = this.pm.layout.ep;
    const prev = moe.placements.get(l)?.physicalToLogical ?? Array.from({ length: E }, (_, e) => e);
    if (physicalToLogical.length !== prev.length) throw new Error(`forcePlacement: ${physicalToLogical.length} slots, the layer has ${prev.length}`);
    const holder = new Map(prev.map((e, p) => [e, p]));
    const moves = physicalToLogical.flatMap((to, slot) => (prev[slot] === to ? [] : [{ slot, device: Math.floor(slot / (prev.length / ep)), from: prev[slot], to, source: holder.get(to)! }]));
    const rep = this.migrate(l, prev, physicalToLogical, moves);
    moe.placements.set(l, layerFromSlots(physicalToLogical, E, ep, new Array<number>(E).fill(0)));
    this.placement?.migrations.push({ ...rep, step });
    return rep;
  }

  /**
   * Move layer l's expert banks from slot table `prev` to `next`: the weights with their AdamW moments
   * (per-rank AdamW), or, under the distributed optimizer, the (full, per-rank) weights then the sharded
   * moments over the expert-DP group (migrateShardedMoments). Bytes and seconds are the sum of both.
   */
  private migrate(l: number, prev: readonly number[], next: readonly number[], moves: readonly SlotMove[]): MigrationReport {
    const dopt = this.dopt;
    const tensors: BankTensors = dopt ? (rank, name) => [this.pm.params[rank].vars.get(name)!]
      : (rank, name) => [this.pm.params[rank].vars.get(name)!, this.opts[rank].m.get(name)!, this.opts[rank].v.get(name)!];
    const rep = migrateLayer(this.pm, l, prev, next, moves, tensors);
    if (!dopt) return rep;
    const mom = migrateShardedMoments(this.pm, dopt, l, next, moves);
    return { ...rep, bytes: rep.bytes + mom.bytes, seconds: rep.seconds + mom.seconds };
  }

  /** Norm of the full gradient from unsynchronised per-rank gradients: Σ over each distinct shard of ‖Σ_group g‖². */
  private unsyncedGradNorm(): number {
    const pm = this.pm, W = pm.layout.world;
    let sq = 0;
    for (const name of pm.params[0].names())
      for (const g of uniqueGroups([...Array(W).keys()], name, (n, r) => pm.gradGroup(n, r))) {
        const gs = g.ranks.map((r) => pm.grads[r].get(name)).filter((x): x is tf.Tensor => !!x);
        if (!gs.length) continue;
        const t = tf.tidy(() => tf.sum(tf.square(tf.addN(gs))));
        sq += t.dataSync()[0]; t.dispose();
      }
    return Math.sqrt(sq);
  }

  private scaleGrads(c: number): void {
    for (const gs of this.pm.grads) for (const [n, g] of gs.grads) { gs.grads.set(n, tf.mul(g, c)); g.dispose(); }
  }

  /** Which flat indices of the full tensor each rank of TP group 0 holds (cached). */
  private tpIndices(name: string, shape: number[]): Int32Array[] {
    let out = this.indexCache.get(name);
    if (!out) {
      const size = shape.reduce((a, b) => a * b, 1);
      const idx = tf.tidy(() => tf.reshape(tf.range(0, size, 1, 'int32'), shape));
      out = this.pm.groups.tp[0].ranks.map((r) => Int32Array.from(localShard(this.pm, name, r, idx)));
      idx.dispose();
      this.indexCache.set(name, out);
    }
    return out;
  }

  /** Full tensor of parameter `name` from per-rank tensors `get(rank)` (logical expert order). */
  private gather(name: string, shape: number[], get: (rank: number) => tf.Tensor): tf.Tensor {
    const pm = this.pm;
    if (pm.expertParams.has(name)) {
      const l = Number(/^layers\.(\d+)\./.exec(name)![1]);
      const slots = pm.moe.placements.get(l)?.physicalToLogical;
      return tf.tidy(() => {
        const full = tf.concat(pm.groups.ep[0].ranks.map(get), 0);
        if (!slots) return full;
        const slotOf = new Array<number>(shape[0]);   // logical expert → a slot holding it (replicas are identical)
        slots.forEach((e, p) => { slotOf[e] = p; });
        return tf.gather(full, slotOf);
      });
    }
    if (!pm.tpShardedParams.has(name)) return tf.clone(get(0));
    const flat = new Float32Array(shape.reduce((a, b) => a * b, 1));
    pm.groups.tp[0].ranks.forEach((r, i) => {
      const idx = this.tpIndices(name, shape)[i], data = get(r).dataSync();
      for (let j = 0; j < idx.length; j++) flat[idx[j]] = data[j];
    });
    return tf.tensor(flat, shape);
  }

  /** Gather every parameter (and expert biases) into the host model; with `opt`, the AdamW moments too. */
  syncHost(opt?: AdamW): void {
    for (const [name, v] of this.host.params.vars) {
      const full = this.gather(name, v.shape, (r) => this.pm.params[r].get(name));
      v.assign(full); full.dispose();
      if (opt) for (const k of ['m', 'v'] as const) {
        const fm = this.gather(name, v.shape, (r) => (this.dopt ? this.dopt.localMoment(name, r, k) : this.opts[r][k].get(name)!));
        opt[k].get(name)!.assign(fm); fm.dispose();
      }
    }
    if (opt) opt.t = this.dopt ? this.dopt.t : this.opts[0].t;
    const src = moeLayersOf(this.pm.replicas[0]), dst = moeLayersOf(this.host);
    src.forEach((s, i) => { dst[i].expertBias = Float32Array.from(s.expertBias); });
  }

  /** Load the host model (and AdamW state) into every rank: resume a checkpoint in parallel. */
  scatterFromHost(opt: AdamW): void {
    if (this.dopt) throw new Error('--resume with --distributed-optimizer is not supported (restoring sharded optimizer state is not implemented)');
    const placements = this.pm.moe.placements;
    this.pm.params.forEach((ps, r) => {
      for (const [name, v] of ps.vars) {
        const l = /^layers\.(\d+)\./.exec(name)?.[1], slots = l !== undefined && this.pm.expertParams.has(name) ? placements.get(Number(l))?.physicalToLogical : undefined;
        const epRank = this.pm.groups.ep.find((g) => g.ranks.includes(r))!.ranks.indexOf(r), S = v.shape[0];
        const set = (dst: tf.Variable, full: tf.Tensor) => tf.tidy(() => dst.assign(slots ? tf.gather(full, slots.slice(epRank * S, (epRank + 1) * S))
          : tf.tensor(localShard(this.pm, name, r, full), dst.shape)));
        set(v, this.host.params.get(name));
        set(this.opts[r].m.get(name)!, opt.m.get(name)!);
        set(this.opts[r].v.get(name)!, opt.v.get(name)!);
      }
      this.opts[r].t = opt.t;
    });
    const src = moeLayersOf(this.host);
    for (const rep of this.pm.replicas) moeLayersOf(rep).forEach((d, i) => { d.expertBias = Float32Array.from(src[i].expertBias); });
  }

  dispose(): void {
    this.opts.forEach((o) => o.dispose());
    this.dopt?.dispose();
    this.pm.dispose();
  }
}

const moeLayersOf = (m: MoEGPT): MoELayer[] => m.blocks.flatMap((b) => (b.moe instanceof MoELayer ? [b.moe] : []));
