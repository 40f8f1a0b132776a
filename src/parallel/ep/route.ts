// Routing of a MoE layer on every rank, with the aux-loss statistics exchanged per scope
// (moe-semantics §5, pangu-ultra-moe §3), and the router backward. Shared by both dispatchers.
//   switch / seq : local counts (one micro-batch of one rank)
//   ep-group     : aux-map counts all-gathered over the EP group (the paper's EP-group loss)
//   global       : aux-map counts all-reduced over the DP group, accumulated over micro-batches
// Every rank's group-scoped term is its fraction of the group's loss (local scores, group counts,
// T_tot = group tokens), so Σ over the group = the switch loss of the group's concatenated tokens.
import { tf } from '../../backend/tf.ts';
import type { Cluster } from '../../device/cluster.ts';
import type { ProcessGroup } from '../../device/groups.ts';
import type { ForwardContext, GradStore } from '../../model/module.ts';
import type { MoELayer } from '../../model/moe/moe-layer.ts';
import { routeTokens, routingBackward, type RoutingPlan } from '../../model/routing/plan.ts';
import { auxLossScores, auxRoutingMap, countsPerExpert, zLoss, type GlobalAuxTracker } from '../../model/routing/aux-loss.ts';
import type { StepClock } from '../clock.ts';

export const GROUP_AUX_TYPES = new Set(['ep-group', 'global']);

export interface RouteGroups {
  /** EP groups (world ranks, ordered by EP rank); together they partition the world */
  ep: ProcessGroup[];
  /** data-parallel groups of the 'global' aux scope (TP×DP) */
  global: ProcessGroup[];
  /** TP groups: with sequence parallelism a DP rank's micro-batch is split over TP, so the 'switch'
   *  statistic is the TP group's (Megatron all-reduces the counts over tp_cp) */
  tp?: ProcessGroup[];
}

/** Whether aux type `type` uses a group statistic under these groups. */
export function isGroupScoped(type: string, groups: RouteGroups): boolean {
  return GROUP_AUX_TYPES.has(type) || (type === 'switch' && (groups.tp?.[0]?.ranks.length ?? 1) > 1);
}

/** Gradient weights of the aux terms: local (switch/seq/z) and group-scoped (ep-group/global). */
export interface EPScales { localAuxScale: number; groupAuxScale: number }

export interface RankRoute { plan: RoutingPlan; groupDLogits: Float64Array | null }

export function groupOf(groups: readonly ProcessGroup[], rank: number): ProcessGroup {
  const g = groups.find((x) => x.ranks.includes(rank));
  if (!g) throw new Error(`rank ${rank} is in no group`);
  return g;
}

/** Route x2[r] [T, H] on every rank r; records router stats into ctxs[r]. */
export function routeRanks(cluster: Cluster, clock: StepClock, groups: RouteGroups, layers: MoELayer[], x2: tf.Tensor2D[], ctxs: ForwardContext[], seqLen: number): RankRoute[] {
  const world = x2.length, moe = layers[0].cfg.moe, E = moe.numExperts;
  const [T, H] = x2[0].shape;
  const logits = x2.map((x, r) => {
    const l = tf.tidy(() => tf.matMul(x, layers[r].router.weight, false, true));                  // [T, E]
    const host = l.dataSync() as Float32Array; l.dispose();
    clock.compute(r, `L${layers[r].layer} router`, { gemm: [T, E, H] });
    return host;
  });
  const training = ctxs[0].training;
  const bias = (r: number) => (moe.expertBias ? layers[r].expertBias : null);
  const groupTypes = moe.auxLoss.filter((a) => a.coeff > 0 && isGroupScoped(a.type, groups));
  const localCfg = { ...moe, auxLoss: moe.auxLoss.filter((a) => !isGroupScoped(a.type, groups)), zLossCoeff: 0 };
  const out: RankRoute[] = logits.map((l, r) => ({ plan: routeTokens(l, T, E, localCfg, { training, expertBias: bias(r), seqLen }), groupDLogits: null }));
  // z-loss is local (mean over this rank's tokens): its gradient joins the local aux terms
  if (training && moe.zLossCoeff > 0) out.forEach(({ plan }, r) => {
    plan.auxDLogits ??= new Float64Array(T * E);
    plan.auxLosses.z = zLoss(logits[r], T, E, moe.zLossCoeff, plan.auxDLogits).value;
  });
  if (training && groupTypes.length > 0) {
    const auxCounts = logits.map((l) => countsPerExpert(auxRoutingMap(auxLossScores(l, T, E, moe.scoreFunction), T, E, moe.topk), T, E));
    const type = groupTypes[0].type;
    const exchanged = type === 'ep-group' ? exchangeCounts(cluster, clock, groups.ep, auxCounts, 'allGather', 'ep.auxCounts')
      : type === 'switch' ? exchangeCounts(cluster, clock, groups.tp!, auxCounts, 'allGather', 'tp.auxCounts')
        : exchangeCounts(cluster, clock, groups.global, auxCounts, 'allReduce', 'global.auxCounts');
    // the TP-group switch loss is the ep-group formula over the TP group's counts
    const routed = type === 'switch' ? [{ type: 'ep-group' as const, coeff: groupTypes[0].coeff }] : groupTypes;
    for (let r = 0; r < world; r++) {
      const real = layers[r].globalTracker;
      const tracker = { add: () => real.add(exchanged[r][0]), average: () => real.average() } as unknown as GlobalAuxTracker;
      const g = routeTokens(logits[r], T, E, { ...moe, auxLoss: routed, zLossCoeff: 0 }, {
        training, expertBias: bias(r), seqLen,
        globalTracker: tracker, updateGlobalTracker: ctxs[r].recordStats, globalGroupSize: groupOf(groups.global, r).ranks.length,
        epGroupCounts: () => exchanged[r],
      });
      if (type === 'switch') out[r].plan.auxLosses.switch = g.auxLosses['ep-group'];
      else Object.assign(out[r].plan.auxLosses, g.auxLosses);
      out[r].groupDLogits = g.auxDLogits;
    }
  }
  out.forEach(({ plan }, r) => {
    if (!(ctxs[r].training && ctxs[r].recordStats)) return;
    const tpe = Float64Array.from(plan.permute.tokensPerExpert);
    for (let e = 0; e < E; e++) layers[r].localTokensPerExpert[e] += tpe[e];
    ctxs[r].routerStats.push({ layer: layers[r].layer, tokensPerExpert: tpe, numTokens: T, droppedAssignments: plan.droppedAssignments, auxLosses: { ...plan.auxLosses } });
  });
  return out;
}

/** Per rank: the group members' counts (allGather) or [their sum] (allReduce). */
function exchangeCounts(cluster: Cluster, clock: StepClock, groups: ProcessGroup[], counts: Float64Array[], op: 'allGather' | 'allReduce', label: string): Float64Array[][] {
  const out: Float64Array[][] = new Array(counts.length);
  for (const g of groups) {
    const E = counts[g.ranks[0]].length;
    const ins = g.ranks.map((r) => tf.tensor2d(Float32Array.from(counts[r]), [1, E]));
    const opts = { label, after: clock.after(g.ranks) };
    const res = op === 'allGather' ? cluster.comm.allGather(g, ins, opts) : cluster.comm.allReduce(g, ins, opts);
    clock.comm(g.ranks, res.events);
    g.ranks.forEach((r, i) => {
      const flat = Float64Array.from(res.outputs[i].dataSync());
      out[r] = Array.from({ length: flat.length / E }, (_, j) => flat.slice(j * E, (j + 1) * E));
    });
    tf.dispose([...ins, ...res.outputs]);
  }
  return out;
}

/** Router backward: dPermutedProbs [N] (host) → dx [T, H]; adds the gate gradient. */
export function routerBackward(layer: MoELayer, route: RankRoute, dPermutedProbs: ArrayLike<number>, scales: EPScales, x: tf.Tensor2D, grads: GradStore): tf.Tensor2D {
  const { plan, groupDLogits } = route;
  const dl = routingBackward(plan, dPermutedProbs, scales.localAuxScale);
  if (groupDLogits) for (let j = 0; j < dl.length; j++) dl[j] += scales.groupAuxScale * groupDLogits[j];
  return tf.tidy(() => {
    const dlogits = tf.tensor2d(new Float32Array(dl), [plan.T, plan.E]);                          // [T, E]
    grads.add(layer.router.name, tf.matMul(dlogits, x, true, false));                              // [E, H]
    return tf.matMul(dlogits, layer.router.weight) as tf.Tensor2D;                                // [T, H]
  });
}
