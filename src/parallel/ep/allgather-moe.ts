// The all-gather token dispatcher (Megatron MoEAllGatherTokenDispatcher, moe-semantics §8), the
// alternative to the all-to-all: every rank of the EP group all-gathers the tokens [P·T, H] and the
// dense probs [P·T, E], permutes the rows routed to ITS experts, runs them, unpermutes into
// [P·T, H] and reduce-scatters back to [T, H]. Simpler bookkeeping, more bytes (every token goes
// everywhere). Backward: all-gather ↔ reduce-scatter swap roles.
//
// Dynamic placement (`placements`, as in EPMoE): rank i runs the slots [i·S, (i+1)·S) of the layer's slot
// table; each source rank's rows go to replicas exactly as in the all-to-all dispatcher
// (toPhysicalPermute: the k-th row of expert e on a rank takes replica k mod logicalCount[e]).
import { tf } from '../../backend/tf.ts';
import type { Cluster } from '../../device/cluster.ts';
import type { ProcessGroup } from '../../device/groups.ts';
import type { ForwardContext, GradStore } from '../../model/module.ts';
import type { SavedActivations } from '../../model/saved.ts';
import { permuteTokens, scatterAddRows } from '../../model/moe/permute.ts';
import { permutePlan, type PermutePlan } from '../../model/routing/permute-plan.ts';
import { localExperts } from './dispatch-plan.ts';
import { routeRanks, routerBackward, type EPScales, type RankRoute, type RouteGroups } from './route.ts';
import type { EPRankLayer } from './ep-moe.ts';
import type { StepClock } from '../clock.ts';
import { toPhysicalPermute, type SlotTable } from './physical-permute.ts';

interface AGHost { route: RankRoute; local: PermutePlan; first: number; P: number; epRank: number }

export class AllGatherMoE {
  /** Expert placement per MoE block index (same contract as EPMoE.placements). */
  readonly placements = new Map<number, SlotTable>();

  constructor(readonly cluster: Cluster, readonly groups: RouteGroups, readonly clock: StepClock) {}

  forward(layers: EPRankLayer[], xs: tf.Tensor[], recs: SavedActivations[], ctxs: ForwardContext[], _scales: EPScales): tf.Tensor[] {
    const world = xs.length, cfg = layers[0].layer.cfg, E = cfg.moe.numExperts;
    const H = xs[0].shape[xs[0].shape.length - 1], S = xs[0].shape.length === 3 ? xs[0].shape[1] : xs[0].size / H;
    const T = xs[0].size / H;
    const x2 = xs.map((x, r) => recs[r].save('x', tf.reshape(x, [T, H]) as tf.Tensor2D));         // [T, H]
    const routes = routeRanks(this.cluster, this.clock, this.groups, layers.map((l) => l.layer), x2, ctxs, S);
    const ys: tf.Tensor[] = new Array(world);
    for (const g of this.groups.ep) {
      const P = g.ranks.length;
      const X = this.collective('allGather', g, g.ranks.map((r) => x2[r]), 'ep.allgather.tokens');          // [P·T, H]
      const probsT = g.ranks.map((r) => tf.tensor2d(Float32Array.from(routes[r].plan.probs), [T, E]));
      const Pd = this.collective('allGather', g, probsT, 'ep.allgather.probs');                               // [P·T, E]
      tf.dispose(probsT);
      const probsAll = Pd[0].dataSync();
      // the global routing map follows from the probs' nonzeros only without dropping-with-zero-prob;
      // use the routing maps themselves (host) to stay exact
      const mapAll = new Uint8Array(P * T * E);
      g.ranks.forEach((r, s) => mapAll.set(routes[r].plan.routingMap, s * T * E));
      const table = this.placements.get(layers[0].layer.layer);
      const partial = g.ranks.map((r, i) => {
        const { first, count } = localExperts(i, E, P);
        const local = table ? placedPlan(g.ranks.map((q) => routes[q]), T, E, table, i, table.physicalToLogical.length / P)
          : localPlan(mapAll, probsAll, P * T, E, first, count);
        recs[r].setHost('ep', { route: routes[r], local, first, P, epRank: i } satisfies AGHost);
        const y = tf.tidy(() => {
          const rows = permuteTokens(X[i] as tf.Tensor2D, local.sortedIndices);
          const p = tf.tensor2d(local.permutedProbs, [local.numRows, 1]);
          return scatterAddRows(layers[r].experts.forward(rows, p, local.tokensPerExpert, recs[r]), local.sortedIndices, P * T); // [P·T, H]
        });
        this.clock.compute(r, 'experts fwd', { gemm: [local.numRows, 3 * cfg.moe.expertHiddenSize, H] });
        return y;
      });
      tf.dispose([...X, ...Pd]);
      const Y = this.collective('reduceScatter', g, partial, 'ep.reducescatter.combine');                     // [T, H]
      tf.dispose(partial);
      g.ranks.forEach((r, i) => {
        ys[r] = tf.tidy(() => {
          let y: tf.Tensor = Y[i];
          const sh = layers[r].layer.shared;
          if (sh) y = tf.add(y, sh.forward(x2[r], recs[r]));
          return tf.reshape(y, xs[r].shape);
        });
      });
      tf.dispose(Y);
    }
    return ys;
  }

  backward(layers: EPRankLayer[], dys: tf.Tensor[], recs: SavedActivations[], grads: GradStore[], scales: EPScales): tf.Tensor[] {
    const world = dys.length, H = dys[0].shape[dys[0].shape.length - 1], T = dys[0].size / H;
    const hosts = recs.map((rec) => rec.getHost<AGHost>('ep'));
    const E = hosts[0].route.plan.E;
    const dy2 = dys.map((d) => tf.reshape(d, [T, H]) as tf.Tensor2D);
    const dxs: tf.Tensor[] = new Array(world);
    for (const g of this.groups.ep) {
      const P = g.ranks.length;
      const dY = this.collective('allGather', g, g.ranks.map((r) => dy2[r]), 'ep.reducescatter.combine.bwd');  // [P·T, H]
      const dXp: tf.Tensor[] = [], dPp: tf.Tensor[] = [];
      g.ranks.forEach((r, i) => {
        const { local } = hosts[r];
        const out = tf.tidy(() => {
          const { dx, dProbs } = layers[r].experts.backward(permuteTokens(dY[i] as tf.Tensor2D, local.sortedIndices), local.tokensPerExpert, recs[r], grads[r]);
          // dense dProbs [P·T, E] of this rank's experts
          const idx = tf.tensor2d(Int32Array.from({ length: local.numRows }, (_, j) => local.sortedIndices[j] * E + local.expertOfRow[j]), [local.numRows, 1], 'int32');
          const dP = local.numRows ? tf.reshape(tf.scatterND(idx, tf.reshape(dProbs, [-1]), [P * T * E]), [P * T, E]) : tf.zeros([P * T, E]);
          return { dx: scatterAddRows(dx, local.sortedIndices, P * T), dP };
        });
        this.clock.compute(r, 'experts bwd', { gemm: [local.numRows, 6 * layers[r].layer.cfg.moe.expertHiddenSize, H] });
        dXp.push(out.dx); dPp.push(out.dP);
      });
      tf.dispose(dY);
      const dX = this.collective('reduceScatter', g, dXp, 'ep.allgather.tokens.bwd');                       // [T, H]
      const dP = this.collective('reduceScatter', g, dPp, 'ep.allgather.probs.bwd');                        // [T, E]
      tf.dispose([...dXp, ...dPp]);
      g.ranks.forEach((r, i) => {
        const h = hosts[r], layer = layers[r].layer, p = h.route.plan.permute;
        const dense = dP[i].dataSync();
        const dPerm = Float64Array.from({ length: p.numRows }, (_, j) => dense[p.sortedIndices[j] * E + p.expertOfRow[j]]);
        dxs[r] = tf.tidy(() => {
          let dx: tf.Tensor = tf.add(dX[i], routerBackward(layer, h.route, dPerm, scales, recs[r].get<tf.Tensor2D>('x'), grads[r]));
          if (layer.shared) dx = tf.add(dx, layer.shared.backward(dy2[r], recs[r], grads[r]));
          return tf.reshape(dx, dys[r].shape);
        });
      });
      tf.dispose([...dX, ...dP]);
    }
    tf.dispose(dy2);
    return dxs;
  }

  private collective(op: 'allGather' | 'reduceScatter', g: ProcessGroup, ins: tf.Tensor[], label: string): tf.Tensor[] {
    const res = this.cluster.comm[op](g, ins, { label, after: this.clock.after(g.ranks) });
    this.clock.comm(g.ranks, res.events);
    return res.outputs;
  }
}

/** Permute plan of the rows routed to experts [first, first+count) of the gathered map [N, E]. */
function localPlan(map: Uint8Array, probs: ArrayLike<number>, N: number, E: number, first: number, count: number): PermutePlan {
  const sub = new Uint8Array(N * count), p = new Float32Array(N * count);
  for (let t = 0; t < N; t++) for (let j = 0; j < count; j++) { sub[t * count + j] = map[t * E + first + j]; p[t * count + j] = probs[t * E + first + j]; }
  const plan = permutePlan(sub, p, N, count);
  // expertOfRow in global expert ids (for the dense dProbs scatter)
  return { ...plan, expertOfRow: Int32Array.from(plan.expertOfRow, (e) => e + first) };
}

/** The rows of the gathered tokens [P·T] that rank `i` runs under a slot table (S slots per rank):
 *  slot-major over its slots, expertOfRow in logical ids (for the dense dProbs scatter). */
function placedPlan(routes: RankRoute[], T: number, E: number, table: SlotTable, i: number, S: number): PermutePlan {
  const rows: { slot: number; tok: number; prob: number }[] = [];
  routes.forEach((rt, s) => {
    const pp = toPhysicalPermute(rt.plan.permute, table);
    for (let j = 0; j < pp.numRows; j++) if (Math.floor(pp.slotOfRow[j] / S) === i) rows.push({ slot: pp.slotOfRow[j], tok: s * T + pp.sortedIndices[j], prob: pp.permutedProbs[j] });
  });
  rows.sort((a, b) => a.slot - b.slot);   // stable: source order inside a slot
  const tokensPerExpert = new Array<number>(S).fill(0);
  for (const r of rows) tokensPerExpert[r.slot - i * S]++;
  const offsets = new Int32Array(S + 1);
  for (let j = 0; j < S; j++) offsets[j + 1] = offsets[j] + tokensPerExpert[j];
  return {
    T: routes.length * T, E, sortedIndices: Int32Array.from(rows, (r) => r.tok), expertOfRow: Int32Array.from(rows, (r) => table.physicalToLogical[r.slot]),
    tokensPerExpert, offsets, permutedProbs: Float32Array.from(rows, (r) => r.prob), numRows: rows.length,
  };
}
