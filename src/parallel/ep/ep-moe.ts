// Expert-parallel MoE layer executed over every rank of the world in lockstep (one process, real
// tensors per simulated device). Rank r of an EP group of size P owns experts [r·E/P, (r+1)·E/P).
//
// Forward (Megatron MoEAlltoAllTokenDispatcher, code-anchors A1):
//   route              logits = x·Wᵀ per rank, routing on the host; aux counts exchanged per scope
//   dispatch_preprocess  local permute, expert-major                     permuted [N, H]
//   token_dispatch       all-to-all-v (inputSplits from the all-gathered counts) or the hierarchical A2A
//   dispatch_postprocess sort chunks (src, e) → (e, src)                  [N_recv, H]
//   experts              local grouped SwiGLU experts (probs inside, Megatron)
//   combine_preprocess   restore (e, src) → (src, e)
//   token_combine        reverse all-to-all-v (splits swapped)
//   combine_postprocess  unpermute (scatter-add) + shared expert          [T, H]
// Backward is the mirror image: the backward of an all-to-all is the reverse all-to-all with the
// splits swapped, the backward of a gather is a scatter-add, and the probs' gradient travels back
// to the router of the token's rank.
//
// Aux-loss scopes (moe.auxLoss types): switch/seq use local counts; ep-group all-gathers the aux-map
// counts over the EP group; global all-reduces them over the data-parallel group and accumulates them
// over micro-batches (GlobalAuxTracker). Group-scoped terms are fractions of the group's loss, so their
// gradient scale is `groupAuxScale` (= shards in the group / (DP·M)), local ones use `localAuxScale`.
import { tf } from '../../backend/tf.ts';
import type { Cluster } from '../../device/cluster.ts';
import type { ProcessGroup } from '../../device/groups.ts';
import type { RankDispatch } from '../../device/a2a-plan.ts';
import type { ForwardContext, GradStore } from '../../model/module.ts';
import type { SavedActivations } from '../../model/saved.ts';
import type { MoELayer } from '../../model/moe/moe-layer.ts';
import type { GroupedExperts } from '../../model/moe/experts.ts';
import { permuteTokens, scatterAddRows } from '../../model/moe/permute.ts';
import { planAllToAllDispatch, type EPDispatchPlan } from './dispatch-plan.ts';
import { routeRanks, routerBackward, type EPScales, type RankRoute, type RouteGroups } from './route.ts';
import { toLogicalRows, toPhysicalPermute, type SlotTable } from './physical-permute.ts';
import type { StepClock } from '../clock.ts';

export type { EPScales };

export type DispatcherKind = 'alltoall' | 'alltoall-hierarchical' | 'allgather';

/** One rank's view of a MoE layer: the replica's router/shared expert/buffers, and its local experts. */
export interface EPRankLayer { layer: MoELayer; experts: GroupedExperts }

/** Host state of one rank's layer call, kept in its record under 'ep'. */
interface EPHost { route: RankRoute; dispatch: EPDispatchPlan; rankDispatch: RankDispatch; epRank: number; perm: RankPermute }

/** The rows a rank dispatches: the router's logical permute, or its physical re-sort under a placement. */
interface RankPermute { sortedIndices: Int32Array; permutedProbs: Float32Array; numRows: number; tokensPerSlot: number[]; slotOfRow: Int32Array; order: Int32Array | null }

export class EPMoE {
  /** Expert placement per MoE block index (dynamic placement): slot p of the layer lives on EP rank
   *  ⌊p / (R/P)⌋ and holds logical expert physicalToLogical[p]. Absent: rank r owns [r·E/P, (r+1)·E/P). */
  readonly placements = new Map<number, SlotTable>();

  constructor(readonly cluster: Cluster, readonly groups: RouteGroups, readonly dispatcher: DispatcherKind, readonly clock: StepClock) {
    if (dispatcher === 'allgather') throw new Error(`EPMoE: use AllGatherMoE for the all-gather dispatcher`);
  }

  /** xs[r] [B, S, H] on world rank r → ys[r] [B, S, H]. */
  forward(layers: EPRankLayer[], xs: tf.Tensor[], recs: SavedActivations[], ctxs: ForwardContext[], _scales: EPScales): tf.Tensor[] {
    const world = xs.length, cfg = layers[0].layer.cfg, moe = cfg.moe, E = moe.numExperts;
    const H = xs[0].shape[xs[0].shape.length - 1], S = xs[0].shape.length === 3 ? xs[0].shape[1] : xs[0].size / H;
    const T = xs[0].size / H;
    const x2 = xs.map((x, r) => recs[r].save('x', tf.reshape(x, [T, H]) as tf.Tensor2D));          // [T, H]
    const routes = routeRanks(this.cluster, this.clock, this.groups, layers.map((l) => l.layer), x2, ctxs, S);
    const plans = routes.map((x) => x.plan);
    const table = this.placements.get(layers[0].layer.layer);
    const perms: RankPermute[] = plans.map(({ permute: p }) => {
      if (!table) return { sortedIndices: p.sortedIndices, permutedProbs: p.permutedProbs, numRows: p.numRows, tokensPerSlot: p.tokensPerExpert, slotOfRow: p.expertOfRow, order: null };
      return toPhysicalPermute(p, table);
    });
    const R = table ? table.physicalToLogical.length : E;

    const ys: tf.Tensor[] = new Array(world);
    for (const g of this.groups.ep) {
      const P = g.ranks.length, Eloc = R / P;
      // dispatch_preprocess: local permute (expert-major) and the counts all-gather
      const permuted = g.ranks.map((r) => permuteTokens(x2[r], perms[r].sortedIndices));                 // [N, H]
      const probs = g.ranks.map((r) => tf.tensor2d(perms[r].permutedProbs, [perms[r].numRows, 1]));      // [N, 1]
      const counts = this.allGatherCounts(g, g.ranks.map((r) => perms[r].tokensPerSlot));               // [P][R]
      const dplans = planAllToAllDispatch(counts);
      g.ranks.forEach((r, i) => {
        const p = perms[r];
        const rankDispatch: RankDispatch = { numTokens: T, rowToken: p.sortedIndices, rowDest: Int32Array.from(p.slotOfRow, (e) => Math.floor(e / Eloc)) };
        recs[r].setHost('ep', { route: routes[r], dispatch: dplans[i], rankDispatch, epRank: i, perm: p } satisfies EPHost);
      });
      // token_dispatch
      const recvTok = this.a2a(g, permuted, g.ranks.map((r) => x2[r]), dplans, 'forward', 'ep.dispatch', recs);
      const recvProbs = this.a2aFlat(g, probs, dplans.map((d) => d.inputSplits), 'ep.dispatch.probs');
      tf.dispose([...permuted, ...probs]);
      // dispatch_postprocess + experts + combine_preprocess
      const expertOut = g.ranks.map((r, i) => {
        const d = dplans[i];
        const y = tf.tidy(() => {
          const sorted = gatherRows(recvTok[i], d.sortRows), sortedProbs = gatherRows(recvProbs[i], d.sortRows);
          const out = layers[r].experts.forward(sorted, sortedProbs, d.tokensPerLocalExpert, recs[r]);         // [N_recv, H]
          return gatherRows(out, d.restoreRows);
        });
        this.chargeExperts(r, d, H, cfg.moe.expertHiddenSize, 'fwd');
        return y;
      });
      tf.dispose([...recvTok, ...recvProbs]);
      // token_combine + combine_postprocess
      const back = this.a2a(g, expertOut, null, dplans, 'reverse', 'ep.combine', recs);   // [N, H] local-permute order, or [T, H] (hierarchical)
      tf.dispose(expertOut);
      g.ranks.forEach((r, i) => {
        ys[r] = tf.tidy(() => {
          let y: tf.Tensor = this.dispatcher === 'alltoall-hierarchical' ? back[i] : scatterAddRows(back[i] as tf.Tensor2D, perms[r].sortedIndices, T);
          const sh = layers[r].layer.shared;
          if (sh) { y = tf.add(y, sh.forward(x2[r], recs[r])); this.clock.compute(r, 'shared fwd', { gemm: [T, 3 * (sh.w1.shape[1] as number), H] }); }
          return tf.reshape(y, xs[r].shape);
        });
      });
      tf.dispose(back);
    }
    return ys;
  }

  /** dys[r] → dxs[r]; adds router/expert/shared grads to grads[r]. */
  backward(layers: EPRankLayer[], dys: tf.Tensor[], recs: SavedActivations[], grads: GradStore[], scales: EPScales): tf.Tensor[] {
    const world = dys.length, H = dys[0].shape[dys[0].shape.length - 1], T = dys[0].size / H;
    const hosts = recs.map((rec) => rec.getHost<EPHost>('ep'));
    const dy2 = dys.map((d) => tf.reshape(d, [T, H]) as tf.Tensor2D);
    const dxs: tf.Tensor[] = new Array(world);
    for (const g of this.groups.ep) {
      const dplans = g.ranks.map((r) => hosts[r].dispatch);
      // backward of combine_postprocess (unpermute) and token_combine: permute dy, all-to-all forward direction
      const dPerm = g.ranks.map((r) => permuteTokens(dy2[r], hosts[r].perm.sortedIndices));
      const recv = this.a2a(g, dPerm, g.ranks.map((r) => dy2[r]), dplans, 'forward', 'ep.combine.bwd', recs);
      tf.dispose(dPerm);
      const dRows: tf.Tensor[] = [], dProbRows: tf.Tensor[] = [];
      g.ranks.forEach((r, i) => {
        const d = dplans[i];
        const { dx, dProbs } = tf.tidy(() => {
          const out = layers[r].experts.backward(gatherRows(recv[i], d.sortRows), d.tokensPerLocalExpert, recs[r], grads[r]);
          return { dx: gatherRows(out.dx, d.restoreRows), dProbs: gatherRows(out.dProbs, d.restoreRows) };
        });
        this.chargeExperts(r, d, H, layers[r].layer.cfg.moe.expertHiddenSize, 'bwd');
        dRows.push(dx); dProbRows.push(dProbs);
      });
      tf.dispose(recv);
      // backward of token_dispatch: the reverse all-to-all (splits swapped)
      const dBack = this.a2a(g, dRows, null, dplans, 'reverse', 'ep.dispatch.bwd', recs);
      const dProbBack = this.a2aFlat(g, dProbRows, dplans.map((d) => d.outputSplits), 'ep.dispatch.probs.bwd');
      tf.dispose([...dRows, ...dProbRows]);
      g.ranks.forEach((r, i) => {
        const h = hosts[r], layer = layers[r].layer;
        dxs[r] = tf.tidy(() => {
          let dx: tf.Tensor = this.dispatcher === 'alltoall-hierarchical' ? dBack[i] : scatterAddRows(dBack[i] as tf.Tensor2D, h.perm.sortedIndices, T);
          const dProbs = dProbBack[i].dataSync();
          dx = tf.add(dx, routerBackward(layer, h.route, h.perm.order ? toLogicalRows(dProbs, h.perm.order) : dProbs, scales, recs[r].get<tf.Tensor2D>('x'), grads[r]));
          if (layer.shared) dx = tf.add(dx, layer.shared.backward(dy2[r], recs[r], grads[r]));
          return tf.reshape(dx, dys[r].shape);
        });
        this.clock.backward(r, 'router+shared bwd', { gemm: [T, 2 * h.route.plan.E + (layer.shared ? 6 * (layer.shared.w1.shape[1] as number) : 0), H] });
      });
      tf.dispose([...dBack, ...dProbBack]);
    }
    tf.dispose(dy2);
    return dxs;
  }

  // --- communication helpers ------------------------------------------------------------------------

  /** numGlobalTokensPerExpert [P][E], all-gathered over the EP group. */
  private allGatherCounts(g: ProcessGroup, tokensPerExpert: number[][]): number[][] {
    const ins = tokensPerExpert.map((c) => tf.tensor2d(c, [1, c.length], 'int32'));
    const res = this.cluster.comm.allGather(g, ins, { label: 'ep.tokensPerExpert', after: this.clock.after(g.ranks) });
    this.clock.comm(g.ranks, res.events);
    const E = tokensPerExpert[0].length, flat = Array.from(res.outputs[0].dataSync());
    tf.dispose([...ins, ...res.outputs]);
    return Array.from({ length: g.ranks.length }, (_, s) => flat.slice(s * E, (s + 1) * E));
  }

  private a2aFlat(g: ProcessGroup, inputs: tf.Tensor[], splits: number[][], label: string): tf.Tensor[] {
    const res = this.cluster.comm.allToAllV(g, inputs, splits, { label, after: this.clock.after(g.ranks) });
    this.clock.comm(g.ranks, res.events);
    return res.outputs;
  }

  /**
   * 'forward': permuted rows [N, H] per source → received rows per expert owner (inputSplits); the
   * hierarchical dispatcher sends the tokens themselves (`tokens` [T, H]) once per remote node.
   * 'reverse': expert-side rows → source, splits swapped; hierarchical returns unpermuted [T, H].
   */
  private a2a(g: ProcessGroup, rows: tf.Tensor[], tokens: tf.Tensor[] | null, dplans: EPDispatchPlan[], dir: 'forward' | 'reverse', label: string, recs: SavedActivations[]): tf.Tensor[] {
    if (this.dispatcher !== 'alltoall-hierarchical')
      return this.a2aFlat(g, rows, dplans.map((d) => (dir === 'forward' ? d.inputSplits : d.outputSplits)), label);
    const dispatch = g.ranks.map((r) => recs[r].getHost<EPHost>('ep').rankDispatch);
    const opts = { label, after: this.clock.after(g.ranks) };
    const res = dir === 'forward'
      ? this.cluster.comm.hierarchicalAllToAll(g, tokens ?? rows, dispatch, opts)
      : this.cluster.comm.hierarchicalCombine(g, rows, dispatch, opts);
    this.clock.comm(g.ranks, res.events);
    return res.outputs;
  }

  private chargeExperts(rank: number, d: EPDispatchPlan, H: number, F: number, pass: 'fwd' | 'bwd'): void {
    const rows = d.tokensPerLocalExpert.reduce((a, b) => a + b, 0);
    // SwiGLU: 3 GEMMs forward, 6 backward (dgrad + wgrad)
    // (clock.backward: dX and dW, 3 GEMMs each, when the clock splits the backward)
    if (pass === 'fwd') this.clock.compute(rank, 'experts fwd', { gemm: [rows, 3 * F, H] });
    else this.clock.backward(rank, 'experts bwd', { gemm: [rows, 6 * F, H] });
  }
}

/** rows[idx] along axis 0 ([N, C] → [idx.length, C]). */
export function gatherRows(x: tf.Tensor, idx: Int32Array): tf.Tensor2D {
  return tf.tidy(() => {
    const C = x.shape[1] as number;
    if (idx.length === 0) return tf.zeros([0, C]) as tf.Tensor2D;
    return tf.gatherND(x, tf.tensor2d(idx, [idx.length, 1], 'int32')) as tf.Tensor2D;
  });
}
