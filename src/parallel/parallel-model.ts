// ParallelModel: one MoEGPT replica per simulated device, run in lockstep layer by layer so that the
// collectives (which take one tensor per rank) can sit in the middle of a layer.
//
//   const cluster = new Cluster({ spec: getSpec('ascend-910b'), nodes: 1 });
//   const pm = new ParallelModel(cfg, cluster, { layout: 'tp=2,ep=4,dp=4', seed: 1 });
//   const r = pm.forwardBackward(tokens, targets, globalBatch, seqLen, { microBatches: 2 });
//   // pm.grads[rank] are synchronised: step any optimizer per rank on pm.params[rank]
//
// Layout (Megatron rank order, device/groups.ts): rank = tp + TP·dp; the EP groups fold the same
// ranks (rank = ep + EP·edp), so with TP an EP group is made of whole TP groups.
// Semantics (equal to single-device training, tests/parallel-*.test.ts):
//   - DP rank d gets sequences [d·B/DP, (d+1)·B/DP) of the global batch, cut into M micro-batches;
//     the TP ranks of a DP rank share its batch.
//   - TP: attention heads / MLP hidden units / vocab split (tp/shard.ts, tp/vocab-parallel.ts) with the
//     conjugate f/g mappings (tp/mappings.ts); the MoE layer runs in a sequence-parallel region: TP
//     rank i routes tokens [i·T/tp, (i+1)·T/tp) of its DP rank (Megatron requires SP for MoE + TP).
//     With `sequenceParallel` the dense layers run Megatron SP too: residual stream and norms on that
//     token shard, all-gather before column-parallel inputs, reduce-scatter after row-parallel outputs.
//   - every rank scales its loss by 1/(DP·M); gradients are SUMMED over DP (dense), expert-DP (experts)
//     or TP×DP (replicated weights with per-TP-rank partial gradients: router, shared expert, MLA
//     down-projections), i.e. Megatron's average. The objective is the mean over (DP rank,
//     micro-batch) of CE + aux + z, where a group-scoped aux term (ep-group, global, and switch under
//     TP) is each rank's fraction of its group's loss, weighted by the group's share of the tokens.
//   - Rank r of an EP group owns experts [r·E/EP, (r+1)·E/EP) (ep/ep-moe.ts).
//   - CP: load-balanced chunks, rank r of CP holds chunks r and 2·CP−1−r of every sequence; attention is
//     context-parallel (GQA cp/cp-attention.ts, MLA cp/cp-mla.ts), everything else is token-wise on the local chunks.
// Supported: tp, cp, ep, dp (pp = etp = 1); the layout validator lists every other problem up front.
import { tf } from '../backend/tf.ts';
import type { Cluster } from '../device/cluster.ts';
import { groupsOf, resolveDims, type GroupKind, type ProcessGroup } from '../device/groups.ts';
import type { Allocation } from '../device/memory.ts';
import type { ModelConfig } from '../model/config.ts';
import { MoEGPT } from '../model/gpt.ts';
import { InitMemo } from '../model/init.ts';
import { GradStore, type ForwardContext, type Module, type ParamStore, type RouterStats } from '../model/module.ts';
import { SavedActivations } from '../model/saved.ts';
import { resolveLayout, type ParallelSpec, type ResolvedLayout } from './layout.ts';
import { StepClock } from './clock.ts';
import { EPMoE, type DispatcherKind, type EPRankLayer } from './ep/ep-moe.ts';
import { AllGatherMoE } from './ep/allgather-moe.ts';
import { isGroupScoped, type RouteGroups } from './ep/route.ts';
import { allReduceGrads } from './dp/grad-sync.ts';
import { endGlobalBatch, globalGradNorm, syncOwnedGrads } from './pm-grads.ts';
import { TPMappings } from './tp/mappings.ts';
import { buildReplica } from './replica.ts';
import { VocabParallelEmbedding, VocabParallelHead } from './tp/vocab-parallel.ts';
import { createCPAttention, cpShard, type ContextParallelAttention } from './cp/index.ts';
import { disposeMicroBatch, embedBackward, embedForward, headBackward, headForward, layerBackward, layerForward, newMicroBatch, type PhaseHost, type PhaseMemory, type Scales } from './pm-phases.ts';

/** What a stage's memory plan (pp/stage-memory.ts) adds to ParallelModel: the records' ledgers and the layer hooks. */
export interface RecordMemory extends PhaseMemory {
  /** Observe a new record of local rank `rank` (charges its entries to the device, SavedLedger). */
  attach(rank: number, rec: SavedActivations): SavedActivations;
}

export interface ParallelModelOptions {
  layout: string | ParallelSpec;
  seed: number;
  /** token dispatcher of the MoE layers (default 'alltoall') */
  dispatcher?: DispatcherKind;
  /** sharded optimizer state: gradients stay per rank here and are reduce-scattered by
   *  dp/distributed-adamw.ts (default false: gradients are all-reduced in forwardBackward) */
  distributedOptimizer?: boolean;
  /** Megatron sequence parallelism of the dense layers under TP (tp > 1; not with cp > 1): the residual
   *  stream, norms and post-norms run on the rank's token shard [T/tp, H]; all-gather before the
   *  column-parallel attention/MLP input, reduce-scatter after the row-parallel output (default false) */
  sequenceParallel?: boolean;
  /** validate the batch shape too */
  globalBatch?: number; seqLen?: number; microBatches?: number;
  /** a pipeline stage (pp/pp-model.ts): the parameters the stage runs (weights are charged, gradients
   *  synchronised and expert biases updated only for these; default: all) */
  owns?: (name: string) => boolean;
  /** the clock ordering the ops (a pipeline stage passes one that also waits for received messages) */
  clock?: StepClock;
  /** random draws shared with other models of the same seed (the other pipeline stages); default: one memo for this model's replicas */
  initMemo?: InitMemo;
}

export interface ParallelStepReport {
  /** the step objective (see header), equal to the single-device loss */
  loss: number; lmLoss: number; auxLoss: number; zLoss: number;
  perRank: Array<{ rank: number; lmLoss: number; aux: Record<string, number> }>;
  /** router statistics of every MoE layer call, per rank (tokensPerExpert, aux values) */
  routerStats: RouterStats[][];
}

export interface ParallelSummary {
  layout: ResolvedLayout;
  memory: Array<{ rank: number; peak: number; used: number; byCategory: Record<string, { used: number; peak: number }> }>;
  comm: Array<{ op: string; group: string; link: string; bytes: number; messages: number }>;
  commBytes: number;
  /** simulated end time of the last event (seconds) */
  makespan: number;
}


export class ParallelModel implements PhaseHost {
  readonly layout: ResolvedLayout;
  readonly replicas: MoEGPT[] = [];
  readonly params: ParamStore[] = [];
  readonly grads: GradStore[] = [];
  /** expert-parallel parameters (sharded over EP, reduced over expert-DP) */
  readonly expertParams = new Set<string>();
  /** TP-sharded parameters (reduced over DP) */
  readonly tpShardedParams = new Set<string>();
  /** replicated parameters with partial gradients per TP rank (reduced over TP×DP when tp > 1) */
  readonly tpPartialParams = new Set<string>();
  /** dp: the DP coordinate (data shards); dpcp: DP×CP (reduces dense gradients); tpcp: a micro-batch's ranks; tpdp: everything (pp = 1) */
  readonly groups: { dp: ProcessGroup[]; dpcp: ProcessGroup[]; cp: ProcessGroup[]; ep: ProcessGroup[]; edp: ProcessGroup[]; tp: ProcessGroup[]; tpcp: ProcessGroup[]; tpdp: ProcessGroup[] };
  readonly clock: StepClock;
  readonly tpMaps: TPMappings;
  readonly moe: EPMoE | AllGatherMoE;
  private readonly routeGroups: RouteGroups;
  /** per MoE block index, per rank: the rank's layer view */
  private readonly epLayers = new Map<number, EPRankLayer[]>();
  /** per block, per rank: TP shards of attention and dense MLP */
  private readonly attn: Module[][] = [];
  private readonly mlp: (Module | null)[][] = [];
  private readonly vpEmbedding: VocabParallelEmbedding | null = null;
  private readonly vpHead: VocabParallelHead | null = null;
  private readonly actAllocs = new Map<string, Allocation>();
  private gradAllocs: Array<[number, Allocation]> = [];
  /** dense-layer sequence parallelism in force (opts.sequenceParallel with tp > 1) */
  readonly sequenceParallel: boolean;
  /** per-device recompute / swap of the layer records (setMemory; pipeline stages) */
  memory: RecordMemory | null = null;

  constructor(readonly cfg: ModelConfig, readonly cluster: Cluster, readonly opts: ParallelModelOptions) {
    this.layout = resolveLayout(opts.layout, {
      model: cfg, clusterDevices: cluster.size, globalBatch: opts.globalBatch, seqLen: opts.seqLen, microBatches: opts.microBatches,
      supported: { pp: 1, etp: 1 },
    });
    const L = this.layout, problems: string[] = [];
    const groupAux = cfg.moe.auxLoss.filter((a) => a.coeff > 0 && (a.type === 'ep-group' || a.type === 'global' || (L.tp * L.cp > 1 && a.type === 'switch')));
    if (cfg.numMtpLayers > 0) problems.push(`numMtpLayers ${cfg.numMtpLayers}: MTP is not executed in parallel yet`);
    if (cfg.moe.inputJitterEps > 0) problems.push('moe.inputJitterEps > 0 is not supported by the EP router');
    if (cfg.dropout > 0) problems.push('dropout > 0 is not supported in parallel runs');
    if (groupAux.length > 1) problems.push(`at most one group-scoped aux loss (ep-group, global${L.tp > 1 ? ', switch under TP' : ''}), got ${groupAux.map((a) => a.type).join(', ')}`);
    if (L.tp > 1) {
      if (cfg.tieEmbeddings) problems.push('tied embeddings are not supported with tp > 1 (vocab-parallel head)');
      if (cfg.moe.auxLoss.some((a) => a.coeff > 0 && a.type === 'seq')) problems.push("'seq' aux loss is not supported with tp > 1 (sequences are split over TP in the MoE)");
    }
    if (L.ep % (L.tp * L.cp) !== 0 && groupAux.some((a) => a.type === 'ep-group')) problems.push(`ep-group aux with tp·cp = ${L.tp * L.cp} needs ep divisible by tp·cp (got ep=${L.ep})`);
    if (L.cp > 1) {
      if (cfg.moe.auxLoss.some((a) => a.coeff > 0 && a.type === 'seq')) problems.push("'seq' aux loss is not supported with cp > 1 (a rank holds only chunks of each sequence)");
    }
    if (opts.sequenceParallel && L.cp > 1) problems.push(`sequenceParallel with cp=${L.cp} is not implemented`);
    if (problems.length) throw new Error(`ParallelModel: ${problems.join('; ')}`);
    this.sequenceParallel = !!opts.sequenceParallel && L.tp > 1;
    // groups over the first `world` devices of the cluster (Megatron rank order, device/groups.ts)
    const dims = resolveDims(L.world, { tp: L.tp, cp: L.cp, dp: L.dp, pp: L.pp, ep: L.ep, etp: L.etp });
    const groups = (kind: GroupKind) => groupsOf(kind, dims).map((ranks) => ({ kind, ranks }));
    const world = [{ kind: 'tp-dp', ranks: [...Array(L.world).keys()] }];   // pp = cp = 1
    this.groups = { dp: groups('dp'), dpcp: groups('dp-cp'), cp: groups('cp'), ep: groups('ep'), edp: groups('edp'), tp: groups('tp'), tpcp: groups('tp-cp'), tpdp: world };
    this.clock = opts.clock ?? new StepClock(cluster);
    this.tpMaps = new TPMappings(cluster, this.groups.tp, this.clock);
    // every rank starts from the same seeded weights: draw them once, not once per replica
    const memo = opts.initMemo ?? new InitMemo();
    for (let r = 0; r < L.world; r++) this.buildRank(r, memo);
    if (!opts.initMemo) memo.dispose();
    if (L.tp > 1) {
      this.vpEmbedding = new VocabParallelEmbedding(this.tpMaps, this.params, 'embedding.weight', cfg.vocabSize);
      this.vpHead = new VocabParallelHead(this.tpMaps, this.params, 'lmHead.weight', cfg.vocabSize);
    }
    for (let r = 0; r < L.world; r++) {
      const dev = cluster.device(r);
      for (const [name, v] of this.params[r].vars) if (this.owns(name)) dev.hbm.alloc('weights', name, v.size * (dev.elementBytes ?? 4));
    }
    const dispatcher = opts.dispatcher ?? 'alltoall';
    this.routeGroups = { ep: this.groups.ep, global: this.groups.tpdp, tp: this.groups.tpcp };
    this.moe = dispatcher === 'allgather' ? new AllGatherMoE(cluster, this.routeGroups, this.clock) : new EPMoE(cluster, this.routeGroups, dispatcher, this.clock);
  }

  rankIn(groups: ProcessGroup[], rank: number): number { return groups.find((g) => g.ranks.includes(rank))!.ranks.indexOf(rank); }

  /** Replica with the same seed as the single-device model, cut to this rank's shards (replica.ts). */
  private buildRank(r: number, memo: InitMemo): void {
    const x = buildReplica(this.cfg, this.opts.seed, this.layout, this.rankIn(this.groups.tp, r), this.rankIn(this.groups.ep, r), memo);
    x.expert.forEach((n) => this.expertParams.add(n));
    x.tpSharded.forEach((n) => this.tpShardedParams.add(n));
    x.tpPartial.forEach((n) => this.tpPartialParams.add(n));
    // SP: every replicated parameter (the norms) sees only the rank's tokens → partial gradients per TP rank
    if (this.sequenceParallel) for (const n of x.model.params.names()) if (!this.expertParams.has(n) && !this.tpShardedParams.has(n)) this.tpPartialParams.add(n);
    for (const [l, layer] of x.moe) {
      const list = this.epLayers.get(l) ?? [];
      list[r] = layer;
      this.epLayers.set(l, list);
    }
    this.attn.push(x.attn); this.mlp.push(x.mlp);
    this.replicas.push(x.model);
    this.params.push(x.model.params);
    this.grads.push(new GradStore());
  }

  /** MoE block indices (ascending) whose layers run expert-parallel. */
  get moeLayers(): number[] { return [...this.epLayers.keys()].sort((a, b) => a - b); }

  /** Rank `rank`'s view of MoE block `layer`: its replica's MoELayer and its local expert bank. */
  expertBank(rank: number, layer: number): EPRankLayer {
    const v = this.epLayers.get(layer)?.[rank];
    if (!v) throw new Error(`expertBank: block ${layer} is not a MoE layer or rank ${rank} is outside the world of ${this.layout.world}`);
    return v;
  }

  /**
   * Swap rank `rank`'s local expert bank of MoE block `layer` (e.g. a bank of R/P redundant slots,
   * placement/replica-banks.ts). The caller keeps pm.params[rank] and the memory ledger in step.
   */
  setExpertBank(rank: number, layer: number, experts: EPRankLayer['experts']): void {
    this.expertBank(rank, layer).experts = experts;
  }

  /** The group that reduces parameter `name` on `rank`. */
  gradGroup(name: string, rank: number): ProcessGroup {
    const groups = this.expertParams.has(name) ? this.groups.edp : this.tpPartialParams.has(name) ? this.groups.tpdp : this.groups.dpcp;
    return groups.find((g) => g.ranks.includes(rank))!;
  }

  /** Whether this model (a pipeline stage) runs parameter `name`. */
  owns(name: string): boolean { return this.opts.owns ? this.opts.owns(name) : true; }

  /** Whether the aux-loss key `k` is group-scoped (its gradient weight is groupAuxScale). */
  isGroupScoped(k: string): boolean { return isGroupScoped(k, this.routeGroups); }

  /** The phases' view of the per-rank modules (pm-phases.ts). */
  get phase(): PhaseHost['phase'] {
    return this.phaseView ??= { attn: this.attn, mlp: this.mlp, epLayers: this.epLayers, vpEmbedding: this.vpEmbedding, vpHead: this.vpHead, newRecord: (r, o) => this.newRecord(r, o) };
  }
  private phaseView: PhaseHost['phase'] | null = null;

  /** Charge records through `mem` (its ledgers) and apply its plan around each layer; null: plain records. */
  setMemory(mem: RecordMemory | null): void { this.memory = mem; }

  private newRecord(rank: number, owner: string): SavedActivations {
    if (this.memory) return this.memory.attach(rank, new SavedActivations(owner));
    const rec = new SavedActivations(owner), dev = this.cluster.device(rank), eb = dev.elementBytes ?? 4;
    rec.onSave = (_r, info) => this.actAllocs.set(`${rank}/${owner}/${info.name}`, dev.hbm.alloc('activations', `${owner}.${info.name}`, (info.bytes / 4) * eb));
    rec.onFree = (_r, info) => {
      const key = `${rank}/${owner}/${info.name}`, a = this.actAllocs.get(key);
      if (a) { dev.hbm.release(a); this.actAllocs.delete(key); }
    };
    return rec;
  }

  /**
   * sqrt(Σ‖g‖²) of the full (single-device) gradient from the synchronised per-rank shards, each distinct
   * shard once (pm-grads.ts; call after forwardBackward without the distributed optimizer).
   */
  globalGradNorm(): number { return globalGradNorm(this); }

  /** Forget gradients (and their memory accounting). */
  zeroGrad(): void {
    for (const g of this.grads) g.dispose();
    for (const [r, a] of this.gradAllocs) this.cluster.device(r).hbm.release(a);
    this.gradAllocs = [];
  }

  /** Gradient weights of the aux terms: each rank's tokens are 1/(tp·DP) of a micro-batch's. */
  auxScales(M: number): Scales {
    const L = this.layout, share = 1 / (L.tp * L.cp * L.dp * M);
    const scope = this.cfg.moe.auxLoss.find((a) => a.coeff > 0 && isGroupScoped(a.type, this.routeGroups))?.type;
    const groupSize = scope === 'ep-group' ? L.ep : scope === 'global' ? L.world : scope === 'switch' ? L.tp * L.cp : 1;
    return { localAuxScale: share, groupAuxScale: groupSize * share };
  }

  /**
   * One training step's forward and backward over the global batch (tokens/targets [globalBatch·seqLen],
   * batch-major); gradients are synchronised over DP / expert-DP / TP×DP on return (unless the
   * distributed optimizer does it). Call zeroGrad() between steps.
   */
  forwardBackward(tokens: Int32Array, targets: Int32Array, globalBatch: number, seqLen: number, opts: { microBatches?: number; seed?: number } = {}): ParallelStepReport {
    const L = this.layout, M = opts.microBatches ?? 1, W = L.world;
    resolveLayout(L, { model: this.cfg, globalBatch, seqLen, microBatches: M, clusterDevices: this.cluster.size });
    if (tokens.length !== globalBatch * seqLen || targets.length !== tokens.length) throw new Error(`tokens/targets must have globalBatch·seqLen = ${globalBatch * seqLen} entries`);
    const b = globalBatch / (L.dp * M);
    const scales = this.auxScales(M);
    const cpAttn = L.cp > 1 ? createCPAttention(this.cfg, this.cluster, this.groups.cp, this.clock, seqLen) : null;
    const perRank = Array.from({ length: W }, (_, rank) => ({ rank, lmLoss: 0, aux: {} as Record<string, number> }));
    const routerStats: RouterStats[][] = Array.from({ length: W }, () => []);
    let loss = 0, lmLoss = 0, auxLoss = 0, zLoss = 0;
    for (let m = 0; m < M; m++) {
      const ctxs: ForwardContext[] = Array.from({ length: W }, () => ({ training: true, lossScale: 1 / (L.cp * L.dp * M), seed: (opts.seed ?? 1) * 1000 + m, routerStats: [], recordStats: true }));
      const shard = (a: Int32Array, r: number) => {
        const s0 = (this.rankIn(this.groups.dp, r) * M + m) * b * seqLen, seqs = a.subarray(s0, s0 + b * seqLen);
        return L.cp > 1 ? cpShard(seqs, b, seqLen, L.cp, this.rankIn(this.groups.cp, r)) : seqs;
      };
      const ce = this.microBatch((r) => shard(tokens, r), (r) => shard(targets, r), b, seqLen / L.cp, ctxs, scales, cpAttn);
      for (let r = 0; r < W; r++) {
        perRank[r].lmLoss += ce[r] / M;
        routerStats[r].push(...ctxs[r].routerStats);
        const w = 1 / (L.tp * L.cp * L.dp * M);   // TP ranks share the CE; CP ranks hold equal parts of it
        loss += w * ce[r]; lmLoss += w * ce[r];
        for (const st of ctxs[r].routerStats) for (const [k, v] of Object.entries(st.auxLosses)) {
          perRank[r].aux[k] = (perRank[r].aux[k] ?? 0) + v / M;
          const w = isGroupScoped(k, this.routeGroups) ? scales.groupAuxScale : scales.localAuxScale;
          loss += w * v;
          if (k === 'z') zLoss += w * v; else auxLoss += w * v;
        }
      }
    }
    this.finishStep();
    return { loss, lmLoss, auxLoss, zLoss, perRank, routerStats };
  }

  /** Forward + backward of one micro-batch on every rank in lockstep (pm-phases.ts); returns each rank's CE. */
  private microBatch(tok: (r: number) => Int32Array, tgt: (r: number) => Int32Array, b: number, S: number, ctxs: ForwardContext[], scales: Scales, cpAttn: ContextParallelAttention | null): number[] {
    const st = newMicroBatch('', b, S, ctxs, scales, cpAttn), L = this.replicas[0].blocks.length;
    try {
      let h = embedForward(this, st, tok);
      for (let l = 0; l < L; l++) h = layerForward(this, st, l, h);
      const ce = headForward(this, st, h, tgt);
      let d = headBackward(this, st);
      for (let l = L - 1; l >= 0; l--) d = layerBackward(this, st, l, d);
      embedBackward(this, st, d);
      return ce;
    } finally {
      disposeMicroBatch(st);
    }
  }

  /** After the last micro-batch: gradient sync (unless the distributed optimizer does it), expert-bias
   *  update, gradient memory accounting. */
  finishStep(): void {
    if (!this.opts.distributedOptimizer) {
      if (this.opts.owns) syncOwnedGrads(this.cluster, this.clock, this.params, this.grads, (n, r) => this.gradGroup(n, r), (n) => this.owns(n));
      else allReduceGrads(this.cluster, this.clock, this.params, this.grads, (n, r) => this.gradGroup(n, r));
    }
    this.endGlobalBatch();
    for (let r = 0; r < this.layout.world; r++) {
      const dev = this.cluster.device(r);
      for (const [n, g] of this.grads[r].grads) this.gradAllocs.push([r, dev.hbm.alloc('gradients', n, g.size * (dev.elementBytes ?? 4))]);
    }
  }

  /** End of the global batch (Megatron finalize_model_grads): expert biases and 'global' aux trackers (pm-grads.ts). */
  private endGlobalBatch(): void { endGlobalBatch(this, this.epLayers); }

  /** Memory peaks per device, the comm ledger summary and the simulated makespan (for the JSON summary). */
  summary(): ParallelSummary {
    const memory = Array.from({ length: this.layout.world }, (_, rank) => {
      const s = this.cluster.device(rank).hbm.snapshot();
      return { rank, peak: s.peak, used: s.used, byCategory: s.byCategory };
    });
    return { layout: this.layout, memory, comm: this.cluster.commLedger.summary(), commBytes: this.cluster.commLedger.total(), makespan: this.cluster.timeline.makespan };
  }

  dispose(): void {
    this.zeroGrad();
    for (const m of this.replicas) m.dispose();
  }
}
