// Data-parallel gradient synchronisation (Megatron finalize_model_grads / DDP):
//   dense (non-expert) parameters: all-reduce over the DP group;
//   expert parameters:             all-reduce over the expert-DP group (ranks holding the same experts).
// The per-rank gradients are already scaled by 1/(DP·M) (see parallel-model.ts), so the reduction is a
// SUM, which equals Megatron's average of unscaled-by-DP gradients.
// One all-reduce per parameter (no bucketing): bytes per rank = 2(n−1)/n · S per parameter, which is
// what the comm ledger records for a ring (perf-model §2.6).
import { tf } from '../../backend/tf.ts';
import type { Cluster } from '../../device/cluster.ts';
import type { ProcessGroup } from '../../device/groups.ts';
import type { GradStore, ParamStore } from '../../model/module.ts';
import type { StepClock } from '../clock.ts';

/** Which group reduces a parameter (by name) on a rank. */
export type GroupFor = (name: string, rank: number) => ProcessGroup;

/** The group partitions this rank set into: each group once, with the ranks that share it. */
export function uniqueGroups(ranks: readonly number[], name: string, groupFor: GroupFor): ProcessGroup[] {
  const seen = new Map<string, ProcessGroup>();
  for (const r of ranks) { const g = groupFor(name, r); seen.set(g.ranks.join(','), g); }
  return [...seen.values()];
}

/** Gradient of `name` on `rank`, zeros when that rank produced none. */
export function gradOrZeros(grads: GradStore, params: ParamStore, name: string): tf.Tensor {
  return grads.get(name) ?? tf.zerosLike(params.get(name));
}

/** All-reduce (sum) every gradient over its group; the results replace the per-rank gradients. */
export function allReduceGrads(cluster: Cluster, clock: StepClock, params: ParamStore[], grads: GradStore[], groupFor: GroupFor, label = 'dp.grads'): void {
  const ranks = params.map((_, r) => r);
  for (const name of params[0].names()) {
    for (const g of uniqueGroups(ranks, name, groupFor)) {
      if (g.ranks.length === 1) continue;
      const ins = g.ranks.map((r) => gradOrZeros(grads[r], params[r], name));
      const res = cluster.comm.allReduce(g, ins, { label: `${label} ${name}`, after: clock.after(g.ranks) });
      clock.comm(g.ranks, res.events);
      g.ranks.forEach((r, i) => {
        const old = grads[r].grads.get(name);
        grads[r].grads.set(name, res.outputs[i]);
        if (old) old.dispose(); else ins[i].dispose();
      });
    }
  }
}
