// Gradient bookkeeping of ParallelModel (parallel-model.ts): the global gradient norm over the
// synchronised shards, the end-of-batch expert-bias update, and the gradient sync restricted to the
// parameters a pipeline stage owns (src/parallel/pp).
import { tf } from '../backend/tf.ts';
import type { Cluster } from '../device/cluster.ts';
import type { GradStore, ParamStore } from '../model/module.ts';
import type { StepClock } from './clock.ts';
import { gradOrZeros, uniqueGroups, type GroupFor } from './dp/grad-sync.ts';
import type { EPRankLayer } from './ep/ep-moe.ts';
import type { ParallelModel } from './parallel-model.ts';

/**
 * sqrt(Σ‖g‖²) of the full (single-device) gradient from the synchronised per-rank shards, counting
 * each distinct shard once: experts over rank 0's EP group, TP shards over rank 0's TP group, the
 * rest from rank 0 (parameters without a gradient, e.g. not owned by a pipeline stage, count 0).
 */
export function globalGradNorm(pm: ParallelModel): number {
  let sq = 0;
  for (const name of pm.params[0].names()) {
    const ranks = pm.expertParams.has(name) ? pm.groups.ep[0].ranks : pm.tpShardedParams.has(name) ? pm.groups.tp[0].ranks : [0];
    for (const r of ranks) {
      const g = pm.grads[r].get(name);
      if (!g) continue;
      const t = tf.tidy(() => tf.sum(tf.square(g)));
      sq += t.dataSync()[0];
      t.dispose();
    }
  }
  return Math.sqrt(sq);
}

/**
 * End of the global batch (Megatron finalize_model_grads): expert-bias counts all-reduced over
 * TP×DP, b ← b + u·sign(mean(c) − c) on every replica, and the 'global' aux trackers reset (only the
 * MoE layers the model owns: owns() decides by the layer prefix).
 */
export function endGlobalBatch(pm: ParallelModel, epLayers: Map<number, EPRankLayer[]>): void {
  for (const [l, list] of epLayers) {
    if (!pm.owns(`layers.${l}.`)) continue;
    if (pm.cfg.moe.expertBias) {
      for (const g of pm.groups.tpdp) {
        const ins = g.ranks.map((r) => tf.tensor1d(Float32Array.from(list[r].layer.localTokensPerExpert)));
        const res = pm.cluster.comm.allReduce(g, ins, { label: 'dp.expertBiasCounts', after: pm.clock.after(g.ranks) });
        pm.clock.comm(g.ranks, res.events);
        g.ranks.forEach((r, i) => list[r].layer.updateExpertBias(res.outputs[i].dataSync()));
        tf.dispose([...ins, ...res.outputs]);
      }
    } else for (const x of list) x.layer.updateExpertBias();
    for (const x of list) x.layer.resetGlobalAux();
  }
}

/** allReduceGrads restricted to the parameters a pipeline stage runs (the others have no gradient). */
export function syncOwnedGrads(cluster: Cluster, clock: StepClock, params: ParamStore[], grads: GradStore[], groupFor: GroupFor, owns: (n: string) => boolean): void {
  const ranks = params.map((_, r) => r);
  for (const name of params[0].names()) {
    if (!owns(name)) continue;
    for (const g of uniqueGroups(ranks, name, groupFor)) {
      if (g.ranks.length === 1) continue;
      const ins = g.ranks.map((r) => gradOrZeros(grads[r], params[r], name));
      const res = cluster.comm.allReduce(g, ins, { label: `dp.grads ${name}`, after: clock.after(g.ranks) });
      clock.comm(g.ranks, res.events);
      g.ranks.forEach((r, i) => {
        const old = grads[r].grads.get(name);
        grads[r].grads.set(name, res.outputs[i]);
        if (old) old.dispose(); else ins[i].dispose();
      });
    }
  }
}
