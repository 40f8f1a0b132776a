// The single-device run a ParallelModel step must equal (the oracle of tests/parallel-*.test.ts).
// Same parameters (same seed), same global batch. The micro-batches of the single device are the
// parallel run's aux-statistic groups, concatenated:
//   switch/seq (local counts):  one micro-batch per (DP rank, micro-batch), lossScale 1/(DP·M)
//   ep-group:                   per (EP group, micro-batch) the concatenation of the group's shards,
//                               lossScale 1/(#groups·M) (with EP = world: the whole batch at once)
//   global:                     per micro-batch the concatenation of every DP rank's shard, lossScale 1/M
// so the single device sees exactly the token sets whose counts the parallel aux loss uses, and its
// CE weights every token 1/(global tokens) like the parallel run.
import { GradStore, type ForwardContext } from '../model/module.ts';
import { MoEGPT } from '../model/gpt.ts';
import type { ModelConfig } from '../model/config.ts';
import type { ResolvedLayout } from './layout.ts';
import { tf } from '../backend/tf.ts';
import type { ParallelModel } from './parallel-model.ts';
import { shardKind, shardOf } from './tp/shard.ts';

export interface ReferenceStep { loss: number; grads: GradStore; model: MoEGPT }

/** Sequences of DP rank d's micro-batch m (b sequences each), as in ParallelModel.forwardBackward. */
export function shardSequences(d: number, m: number, M: number, b: number): number[] {
  return Array.from({ length: b }, (_, i) => (d * M + m) * b + i);
}

/** Single-device micro-batches (lists of sequence ids) and their loss scale for this layout. */
export function referenceMicroBatches(cfg: ModelConfig, layout: ResolvedLayout, globalBatch: number, M: number): { seqs: number[]; scale: number }[] {
  const b = globalBatch / (layout.dp * M), DP = layout.dp;
  const scope = cfg.moe.auxLoss.find((a) => a.coeff > 0 && (a.type === 'ep-group' || a.type === 'global'))?.type;
  const groupSize = scope === 'ep-group' ? layout.ep / (layout.tp * layout.cp) : scope === 'global' ? DP : 1;   // DP shards per statistic
  const out: { seqs: number[]; scale: number }[] = [];
  for (let m = 0; m < M; m++)
    for (let g = 0; g < DP / groupSize; g++)
      out.push({ seqs: Array.from({ length: groupSize }, (_, i) => shardSequences(g * groupSize + i, m, M, b)).flat(), scale: groupSize / (DP * M) });
  // 'global' accumulates counts over micro-batches in order: keep micro-batch order m = 0..M-1
  return out;
}

/** Run the single-device oracle: returns the step loss and the gradients (caller disposes). */
export function referenceStep(model: MoEGPT, layout: ResolvedLayout, tokens: Int32Array, targets: Int32Array, globalBatch: number, seqLen: number, M = 1): ReferenceStep {
  const grads = new GradStore();
  let loss = 0;
  for (const mb of referenceMicroBatches(model.cfg, layout, globalBatch, M)) {
    const pick = (a: Int32Array) => { const o = new Int32Array(mb.seqs.length * seqLen); mb.seqs.forEach((s, i) => o.set(a.subarray(s * seqLen, (s + 1) * seqLen), i * seqLen)); return o; };
    const ctx: ForwardContext = { training: true, lossScale: mb.scale, seed: 1, routerStats: [], recordStats: true };
    const r = model.forwardBackward(pick(tokens), pick(targets), mb.seqs.length, seqLen, ctx, grads);
    loss += mb.scale * r.loss;
  }
  for (const l of model.moeLayers()) l.resetGlobalAux();
  return { loss, grads, model };
}

/**
 * The part of a full (single-device) tensor that `rank` of `pm` holds for parameter `name`: the EP
 * rank's experts of a stacked bank, the TP shard (tp/shard.ts, vocab rows/columns), or all of it.
 */
export function localShard(pm: ParallelModel, name: string, rank: number, full: tf.Tensor): Float32Array {
  return tf.tidy(() => {
    const L = pm.layout;
    if (pm.expertParams.has(name)) {
      const epRank = pm.groups.ep.find((g) => g.ranks.includes(rank))!.ranks.indexOf(rank), count = full.shape[0] / L.ep;
      return tf.slice(full, [epRank * count], [count]).dataSync() as Float32Array;
    }
    if (!pm.tpShardedParams.has(name)) return full.dataSync() as Float32Array;
    const tpRank = pm.tpMaps.tpRank(rank);
    const kind = name === 'embedding.weight' ? 'row' : name === 'lmHead.weight' ? 'column' : shardKind(name);
    return shardOf(full, kind, L.tp, tpRank).dataSync() as Float32Array;
  });
}
