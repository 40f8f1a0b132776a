// What the micro-batch phases (pm-phases.ts) call for context-parallel attention, and the two CP-ring
// collectives both implementations use: K/V blocks all-gathered around the CP group forward (ring
// attention's cp − 1 steps of one rank's block) and their gradients reduce-scattered back.
import type { tf } from '../../backend/tf.ts';
import type { Cluster } from '../../device/cluster.ts';
import type { ProcessGroup } from '../../device/groups.ts';
import type { ForwardContext, GradStore, Module, ParamStore } from '../../model/module.ts';
import type { SavedActivations } from '../../model/saved.ts';
import type { StepClock } from '../clock.ts';

/** Context-parallel attention of one layer on every rank in lockstep (GQA: cp-attention.ts, MLA: cp-mla.ts). */
export interface ContextParallelAttention {
  /** xs[r] [b, L, H] (normed, the rank's chunks) → partial outputs [b, L, H] (sum over TP = the output);
   *  `modules[r]` is rank r's (TP-shard) attention module of the layer. */
  forward(prefix: string, params: ParamStore[], xs: tf.Tensor[], recs: SavedActivations[], ctxs: ForwardContext[], modules: Module[]): tf.Tensor[];
  /** dys[r] [b, L, H] → partial dx [b, L, H]; adds the layer's attention gradients. */
  backward(prefix: string, params: ParamStore[], dys: tf.Tensor[], recs: SavedActivations[], grads: GradStore[], ctxs: ForwardContext[], modules: Module[]): tf.Tensor[];
}

type GroupCollective = 'allGather' | 'reduceScatter';

/** Run `op` on every CP group in lockstep, charged on the timeline and the comm ledger; outputs per rank. */
function perGroup(op: GroupCollective, cluster: Cluster, cpGroups: ProcessGroup[], clock: StepClock, xs: tf.Tensor[], label: string): tf.Tensor[] {
  const out: tf.Tensor[] = new Array(xs.length);
  for (const g of cpGroups) {
    const res = cluster.comm[op](g, g.ranks.map((r) => xs[r]), { label, after: clock.after(g.ranks) });
    clock.comm(g.ranks, res.events);
    g.ranks.forEach((r, i) => { out[r] = res.outputs[i]; });
  }
  return out;
}

/** Per rank: concat over its CP group of xs (axis 0, CP-rank order); charged on the timeline and the ledger. */
export const cpAllGather = (cluster: Cluster, cpGroups: ProcessGroup[], clock: StepClock, xs: tf.Tensor[], label: string): tf.Tensor[] =>
  perGroup('allGather', cluster, cpGroups, clock, xs, label);

/** Per rank: its CP rank's slice (axis 0) of the sum over its CP group of xs. */
export const cpReduceScatter = (cluster: Cluster, cpGroups: ProcessGroup[], clock: StepClock, xs: tf.Tensor[], label: string): tf.Tensor[] =>
  perGroup('reduceScatter', cluster, cpGroups, clock, xs, label);
