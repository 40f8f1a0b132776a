// ParallelModel: one MoEGPT replica per simulated device, run in lockstep layer by layer so that the
// collectives (which take one tensor per rank) can sit in the middle of a layer.
//
//   const cluster = new Cluster({ spec: getSpec('ascend-910b'), nodes: 1 });
//   const pm = new ParallelModel(cfg, cluster, { layout: 'ep=4,dp=4', seed: 1 });
//   const r = pm.forwardBackward(tokens, targets, globalBatch, seqLen, { microBatches: 2 });
//   // pm.grads[rank] are synchronised: step any optimizer per rank on pm.params[rank]
//
// Semantics (equal to single-device training, tests/parallel-*.test.ts):
//   - DP rank d gets sequences [d·B/DP, (d+1)·B/DP) of the global batch, cut into M micro-batches.
//   - every rank scales its loss by 1/(DP·M); gradients are SUMMED over DP (dense) / expert-DP
//     (experts), i.e. Megatron's average. The step objective is mean over (rank, micro-batch) of
//     CE + local aux (switch/seq) + z, plus the group-scoped aux losses (ep-group/global), whose
//     per-rank terms are fractions of their group's loss and are therefore weighted by
//     shards-in-group/(DP·M): with EP = world the ep-group loss is the switch loss of the
//     concatenated batch.
//   - Rank r of an EP group owns experts [r·E/EP, (r+1)·E/EP) (ep/ep-moe.ts).
// Supported: ep, dp (tp = cp = pp = 1); the layout validator lists every other problem up front.
import { tf } from '../backend/tf.ts';
import type { Cluster } from '../device/cluster.ts';
import { groupsOf, resolveDims, type GroupKind, type ProcessGroup } from '../device/groups.ts';
import type { Allocation } from '../device/memory.ts';
import type { ModelConfig } from '../model/config.ts';
import { MoEGPT } from '../model/gpt.ts';
import { GradStore, ParamStore, type ForwardContext, type RouterStats } from '../model/module.ts';
import { SavedActivations } from '../model/saved.ts';
import type { TransformerBlock } from '../model/block.ts';
import { GroupedExperts } from '../model/moe/experts.ts';
import { MoELayer } from '../model/moe/moe-layer.ts';
import { resolveLayout, type ParallelSpec, type ResolvedLayout } from './layout.ts';
import { StepClock } from './clock.ts';
import { EPMoE, type DispatcherKind, type EPRankLayer } from './ep/ep-moe.ts';
import { AllGatherMoE } from './ep/allgather-moe.ts';
import { localExperts } from './ep/dispatch-plan.ts';
import { allReduceGrads } from './dp/grad-sync.ts';

export interface ParallelModelOptions {
  layout: string | ParallelSpec;
  seed: number;
  /** token dispatcher of the MoE layers (default 'alltoall') */
  dispatcher?: DispatcherKind;
  /** sharded optimizer state: gradients stay per rank here and are reduce-scattered by
   *  dp/distributed-adamw.ts (default false: gradients are all-reduced in forwardBackward) */
  distributedOptimizer?: boolean;
  /** validate the batch shape too */
  globalBatch?: number; seqLen?: number; microBatches?: number;
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

const GROUP_AUX = new Set(['ep-group', 'global']);

export class ParallelModel {
  readonly layout: ResolvedLayout;
  readonly replicas: MoEGPT[] = [];
  readonly params: ParamStore[] = [];
  readonly grads: GradStore[] = [];
  /** names of expert-parallel parameters (sharded over EP, reduced over expert-DP) */
  readonly expertParams = new Set<string>();
  readonly groups: { dp: ProcessGroup[]; ep: ProcessGroup[]; edp: ProcessGroup[] };
  readonly clock: StepClock;
  readonly moe: EPMoE | AllGatherMoE;
  /** per rank, per MoE block index: the rank's layer view */
  private readonly epLayers = new Map<number, EPRankLayer[]>();
  private readonly actAllocs = new Map<string, Allocation>();
  private gradAllocs: Array<[number, Allocation]> = [];

  constructor(readonly cfg: ModelConfig, readonly cluster: Cluster, readonly opts: ParallelModelOptions) {
    this.layout = resolveLayout(opts.layout, {
      model: cfg, clusterDevices: cluster.size, globalBatch: opts.globalBatch, seqLen: opts.seqLen, microBatches: opts.microBatches,
      supported: { tp: 1, cp: 1, pp: 1, etp: 1 },
    });
    const problems: string[] = [];
    if (cfg.numMtpLayers > 0) problems.push(`numMtpLayers ${cfg.numMtpLayers}: MTP is not executed in parallel yet`);
    if (cfg.moe.inputJitterEps > 0) problems.push('moe.inputJitterEps > 0 is not supported by the EP router');
    if (cfg.dropout > 0) problems.push('dropout > 0 is not supported in parallel runs');
    if (cfg.moe.auxLoss.filter((a) => a.coeff > 0 && GROUP_AUX.has(a.type)).length > 1) problems.push('at most one group-scoped aux loss (ep-group or global)');
    if (problems.length) throw new Error(`ParallelModel: ${problems.join('; ')}`);
    const L = this.layout;
    // groups over the first `world` devices of the cluster (Megatron rank order, device/groups.ts)
    const dims = resolveDims(L.world, { tp: L.tp, cp: L.cp, dp: L.dp, pp: L.pp, ep: L.ep, etp: L.etp });
    const groups = (kind: GroupKind) => groupsOf(kind, dims).map((ranks) => ({ kind, ranks }));
    this.groups = { dp: groups('dp'), ep: groups('ep'), edp: groups('edp') };
    this.clock = new StepClock(cluster);
    for (let r = 0; r < L.world; r++) this.buildRank(r);
    const dispatcher = opts.dispatcher ?? 'alltoall';
    const routeGroups = { ep: this.groups.ep, global: this.groups.dp };
    this.moe = dispatcher === 'allgather' ? new AllGatherMoE(cluster, routeGroups, this.clock) : new EPMoE(cluster, routeGroups, dispatcher, this.clock);
  }

  private epRank(rank: number): number { return this.groups.ep.find((g) => g.ranks.includes(rank))!.ranks.indexOf(rank); }

  /** Replica with the same seed as the single-device model, then keep only this rank's experts. */
  private buildRank(r: number): void {
    const cfg = this.cfg, model = new MoEGPT(cfg, this.opts.seed);
    const { first, count } = localExperts(this.epRank(r), cfg.moe.numExperts, this.layout.ep);
    model.blocks.forEach((b, l) => {
      if (!(b.moe instanceof MoELayer)) return;
      const full = b.moe.experts, prefix = full.prefix;
      const slices = [full.w1, full.w3, full.w2].map((w) => tf.slice(w, [first, 0, 0], [count, -1, -1]));
      const tmp = new ParamStore();
      const experts = new GroupedExperts(prefix, count, cfg.hiddenSize, cfg.moe.expertHiddenSize, tmp, () => slices.shift()!, 0);
      for (const n of ['w1', 'w3', 'w2']) {
        const name = `${prefix}.${n}`;
        model.params.vars.get(name)!.dispose();
        model.params.vars.set(name, tmp.vars.get(name)!);
        this.expertParams.add(name);
      }
      tmp.vars.clear();
      const list = this.epLayers.get(l) ?? [];
      list[r] = { layer: b.moe, experts };
      this.epLayers.set(l, list);
    });
    const dev = this.cluster.device(r);
    for (const [name, v] of model.params.vars) dev.hbm.alloc('weights', name, v.size * (dev.elementBytes ?? 4));
    this.replicas.push(model);
    this.params.push(model.params);
    this.grads.push(new GradStore());
  }

  /** The group that reduces parameter `name` on `rank`. */
  gradGroup(name: string, rank: number): ProcessGroup {
    const groups = this.expertParams.has(name) ? this.groups.edp : this.groups.dp;
    return groups.find((g) => g.ranks.includes(rank))!;
  }

  private newRecord(rank: number, owner: string): SavedActivations {
    const rec = new SavedActivations(owner), dev = this.cluster.device(rank), eb = dev.elementBytes ?? 4;
    rec.onSave = (_r, info) => this.actAllocs.set(`${rank}/${owner}/${info.name}`, dev.hbm.alloc('activations', `${owner}.${info.name}`, (info.bytes / 4) * eb));
    rec.onFree = (_r, info) => {
      const key = `${rank}/${owner}/${info.name}`, a = this.actAllocs.get(key);
      if (a) { dev.hbm.release(a); this.actAllocs.delete(key); }
    };
    return rec;
  }

  /** Forget gradients (and their memory accounting). */
  zeroGrad(): void {
    for (const g of this.grads) g.dispose();
    for (const [r, a] of this.gradAllocs) this.cluster.device(r).hbm.release(a);
    this.gradAllocs = [];
  }

  /**
   * One training step's forward and backward over the global batch (tokens/targets [globalBatch·seqLen],
   * batch-major); gradients are synchronised over DP / expert-DP on return. Call zeroGrad() between steps.
   */
  forwardBackward(tokens: Int32Array, targets: Int32Array, globalBatch: number, seqLen: number, opts: { microBatches?: number; seed?: number } = {}): ParallelStepReport {
    const L = this.layout, M = opts.microBatches ?? 1, W = L.world;
    resolveLayout(L, { model: this.cfg, globalBatch, seqLen, microBatches: M, clusterDevices: this.cluster.size });
    if (tokens.length !== globalBatch * seqLen || targets.length !== tokens.length) throw new Error(`tokens/targets must have globalBatch·seqLen = ${globalBatch * seqLen} entries`);
    const b = globalBatch / (L.dp * M);
    const dpRank = (r: number) => this.groups.dp.find((g) => g.ranks.includes(r))!.ranks.indexOf(r);
    const groupAux = this.cfg.moe.auxLoss.find((a) => a.coeff > 0 && GROUP_AUX.has(a.type));
    const shards = groupAux?.type === 'ep-group' ? L.ep : L.dp;     // data shards in the aux group (tp = cp = 1)
    const scales = { localAuxScale: 1 / (L.dp * M), groupAuxScale: shards / (L.dp * M) };
    const perRank = Array.from({ length: W }, (_, rank) => ({ rank, lmLoss: 0, aux: {} as Record<string, number> }));
    const routerStats: RouterStats[][] = Array.from({ length: W }, () => []);
    let loss = 0, lmLoss = 0, auxLoss = 0, zLoss = 0;
    for (let m = 0; m < M; m++) {
      const ctxs: ForwardContext[] = Array.from({ length: W }, () => ({ training: true, lossScale: 1 / (L.dp * M), seed: (opts.seed ?? 1) * 1000 + m, routerStats: [], recordStats: true }));
      const shard = (a: Int32Array, r: number) => { const s0 = (dpRank(r) * M + m) * b * seqLen; return a.subarray(s0, s0 + b * seqLen); };
      const ce = this.microBatch((r) => shard(tokens, r), (r) => shard(targets, r), b, seqLen, ctxs, scales);
      for (let r = 0; r < W; r++) {
        perRank[r].lmLoss += ce[r] / M;
        routerStats[r].push(...ctxs[r].routerStats);
        loss += ce[r] / (L.dp * M); lmLoss += ce[r] / (L.dp * M);
        for (const st of ctxs[r].routerStats) for (const [k, v] of Object.entries(st.auxLosses)) {
          perRank[r].aux[k] = (perRank[r].aux[k] ?? 0) + v / M;
          const w = GROUP_AUX.has(k) ? scales.groupAuxScale : scales.localAuxScale;
          loss += w * v;
          if (k === 'z') zLoss += w * v; else auxLoss += w * v;
        }
      }
    }
    if (!this.opts.distributedOptimizer) allReduceGrads(this.cluster, this.clock, this.params, this.grads, (n, r) => this.gradGroup(n, r));
    this.endGlobalBatch();
    for (let r = 0; r < W; r++) {
      const dev = this.cluster.device(r);
      for (const [n, g] of this.grads[r].grads) this.gradAllocs.push([r, dev.hbm.alloc('gradients', n, g.size * (dev.elementBytes ?? 4))]);
    }
    // data-parallel replicas count the same loss DP times: perRank has each rank's share
    return { loss, lmLoss, auxLoss, zLoss, perRank, routerStats };
  }

  /** Forward + backward of one micro-batch on every rank in lockstep; returns each rank's CE. */
  private microBatch(tok: (r: number) => Int32Array, tgt: (r: number) => Int32Array, b: number, S: number, ctxs: ForwardContext[], scales: { localAuxScale: number; groupAuxScale: number }): number[] {
    const W = this.layout.world, H = this.cfg.hiddenSize, ranks = [...Array(W).keys()];
    const emb = ranks.map((r) => this.newRecord(r, 'embedding'));
    const heads = ranks.map((r) => this.newRecord(r, 'head'));
    const layerRecs = this.replicas[0].blocks.map((_, l) => ranks.map((r) => this.newRecord(r, `layers.${l}`)));
    const all = () => [...emb, ...heads, ...layerRecs.flat()];
    try {
      let h = ranks.map((r) => this.replicas[r].embed(tok(r), b, S, emb[r]));                         // [b, S, H]
      this.replicas[0].blocks.forEach((_, l) => {
        const blocks = ranks.map((r) => this.replicas[r].blocks[l]), recs = layerRecs[l];
        const pre = ranks.map((r) => tf.tidy(() => blockPre(blocks[r], h[r], recs[r], ctxs[r])));
        ranks.forEach((r) => this.clock.compute(r, `L${l} attn fwd`, { flops: 2 * b * S * attnParams(this.replicas[r], l) }));
        tf.dispose(h);
        let m: tf.Tensor[];
        if (blocks[0].moe) m = this.moe.forward(this.epLayers.get(l)!, pre.map((p) => p.n), recs, ctxs, scales);
        else m = ranks.map((r) => tf.tidy(() => blocks[r].ffn.forward(tf.reshape(pre[r].n, [b * S, H]), recs[r], ctxs[r])));
        h = ranks.map((r) => tf.tidy(() => blockPost(blocks[r], pre[r].h1, m[r], recs[r], ctxs[r])));
        tf.dispose([...pre.flatMap((p) => [p.h1, p.n]), ...m]);
      });
      const ce = ranks.map((r) => {
        const t = tf.tidy(() => this.replicas[r].head.loss(h[r], tgt(r), heads[r]));
        const v = t.dataSync()[0]; t.dispose();
        this.clock.compute(r, 'head fwd', { gemm: [b * S, this.cfg.vocabSize, H] });
        return v;
      });
      tf.dispose(h);
      // backward
      let d = ranks.map((r) => tf.tidy(() => this.replicas[r].head.backward(ctxs[r].lossScale, heads[r], this.grads[r], [b, S, H])));
      ranks.forEach((r) => this.clock.compute(r, 'head bwd', { gemm: [b * S, 2 * this.cfg.vocabSize, H] }));
      for (let l = this.replicas[0].blocks.length - 1; l >= 0; l--) {
        const blocks = ranks.map((r) => this.replicas[r].blocks[l]), recs = layerRecs[l];
        const dm = ranks.map((r) => tf.tidy(() => (blocks[r].mlpPostNorm ? blocks[r].mlpPostNorm!.backward(d[r], recs[r], this.grads[r], ctxs[r]) : tf.clone(d[r]))));
        let dn: tf.Tensor[];
        if (blocks[0].moe) dn = this.moe.backward(this.epLayers.get(l)!, dm, recs, this.grads, scales);
        else dn = ranks.map((r) => tf.tidy(() => tf.reshape(blocks[r].ffn.backward(tf.reshape(dm[r], [b * S, H]), recs[r], this.grads[r], ctxs[r]), [b, S, H])));
        const dPrev = ranks.map((r) => tf.tidy(() => blockPreBackward(blocks[r], d[r], dn[r], recs[r], this.grads[r], ctxs[r])));
        ranks.forEach((r) => { this.clock.compute(r, `L${l} attn bwd`, { flops: 4 * b * S * attnParams(this.replicas[r], l) }); recs[r].dispose(); });
        tf.dispose([...d, ...dm, ...dn]);
        d = dPrev;
      }
      ranks.forEach((r) => tf.tidy(() => { this.replicas[r].embedding.backward(tf.reshape(d[r], [b * S, H]), emb[r], this.grads[r], ctxs[r]).dispose(); }));
      tf.dispose(d);
      return ce;
    } finally {
      for (const rec of all()) rec.dispose();
    }
  }

  /**
   * End of the global batch (Megatron finalize_model_grads): expert-bias counts all-reduced over DP,
   * b ← b + u·sign(mean(c) − c) on every replica, and the 'global' aux trackers reset.
   */
  private endGlobalBatch(): void {
    for (const [, list] of this.epLayers) {
      if (this.cfg.moe.expertBias) {
        for (const g of this.groups.dp) {
          const ins = g.ranks.map((r) => tf.tensor1d(Float32Array.from(list[r].layer.localTokensPerExpert)));
          const res = this.cluster.comm.allReduce(g, ins, { label: 'dp.expertBiasCounts', after: this.clock.after(g.ranks) });
          this.clock.comm(g.ranks, res.events);
          g.ranks.forEach((r, i) => list[r].layer.updateExpertBias(res.outputs[i].dataSync()));
          tf.dispose([...ins, ...res.outputs]);
        }
      } else for (const x of list) x.layer.updateExpertBias();
      for (const x of list) x.layer.resetGlobalAux();
    }
  }

  /** Memory peaks per device, the comm ledger summary and the simulated makespan (for the JSON summary). */
  summary(): ParallelSummary {
    const memory = Array.from({ length: this.layout.world }, (_, rank) => {
      const s = this.cluster.device(rank).hbm.snapshot();
      return { rank, peak: s.peak, used: s.used, byCategory: s.byCategory };
    });
    const comm = this.cluster.commLedger.summary();
    const makespan = this.cluster.timeline.events.reduce((t, e) => Math.max(t, e.end), 0);
    return { layout: this.layout, memory, comm, commBytes: this.cluster.commLedger.total(), makespan };
  }

  dispose(): void {
    this.zeroGrad();
    for (const m of this.replicas) m.dispose();
  }
}

/** Non-expert attention parameters of layer l (for the coarse compute charge). */
function attnParams(model: MoEGPT, l: number): number {
  let n = 0;
  for (const [name, v] of model.params.vars) if (name.startsWith(`layers.${l}.attn.`)) n += v.size;
  return n;
}

// --- TransformerBlock.forward/backward split around the FFN (same sub-modules, same record names) ---

function blockPre(b: TransformerBlock, h: tf.Tensor, rec: SavedActivations, ctx: ForwardContext): { h1: tf.Tensor; n: tf.Tensor } {
  let a = b.attn.forward(b.attnNorm.forward(h, rec, ctx), rec, ctx);
  if (b.attnPostNorm) a = b.attnPostNorm.forward(a, rec, ctx);
  const h1 = tf.add(h, a);
  return { h1, n: b.mlpNorm.forward(h1, rec, ctx) };
}

function blockPost(b: TransformerBlock, h1: tf.Tensor, m0: tf.Tensor, rec: SavedActivations, ctx: ForwardContext): tf.Tensor {
  let m = tf.reshape(m0, h1.shape);
  if (b.mlpPostNorm) m = b.mlpPostNorm.forward(m, rec, ctx);
  return tf.add(h1, m);
}

/** dy = ∂L/∂h_out, dn = ∂L/∂(mlpNorm output) → ∂L/∂h_in. */
function blockPreBackward(b: TransformerBlock, dy: tf.Tensor, dn: tf.Tensor, rec: SavedActivations, grads: GradStore, ctx: ForwardContext): tf.Tensor {
  const dh1 = tf.add(dy, b.mlpNorm.backward(tf.reshape(dn, dy.shape), rec, grads, ctx));
  let da = b.attnPostNorm ? b.attnPostNorm.backward(dh1, rec, grads, ctx) : dh1;
  da = b.attn.backward(da, rec, grads, ctx);
  return tf.add(dh1, b.attnNorm.backward(da, rec, grads, ctx));
}
