// One rank's model: a MoEGPT built with the single-device seed (so every rank starts from the same
// parameters as the single-device model), then cut down to the rank's shards:
//   experts:   the EP rank's slice [first, first + E/EP) of each stacked bank
//   attention: a/tp heads, dense MLP: F/tp units (tp/shard.ts); embedding rows and LM-head columns: V/tp
// Parameter names stay the single-device names; only shapes change.
import { tf } from '../backend/tf.ts';
import type { ModelConfig } from '../model/config.ts';
import type { InitMemo } from '../model/init.ts';
import { MoEGPT } from '../model/gpt.ts';
import { ParamStore, type Module } from '../model/module.ts';
import { GroupedExperts } from '../model/moe/experts.ts';
import { MoELayer } from '../model/moe/moe-layer.ts';
import type { ResolvedLayout } from './layout.ts';
import type { EPRankLayer } from './ep/ep-moe.ts';
import { localExperts } from './ep/dispatch-plan.ts';
import { shardOf, tpAttention, tpMLP } from './tp/shard.ts';

export interface RankReplica {
  model: MoEGPT;
  /** per block: the attention shard, the dense MLP shard (null in MoE blocks) */
  attn: Module[]; mlp: (Module | null)[];
  /** MoE block index → this rank's router/shared expert (the replica's MoELayer) and local experts */
  moe: Map<number, EPRankLayer>;
  /** parameter names by gradient-reduction class */
  expert: string[]; tpSharded: string[]; tpPartial: string[];
}

let uid = 0;

/** `memo`: draws shared with the other replicas of the seed (init.ts InitMemo); same weights, drawn once. */
export function buildReplica(cfg: ModelConfig, seed: number, L: ResolvedLayout, tpRank: number, epRank: number, memo?: InitMemo): RankReplica {
  const model = new MoEGPT(cfg, seed, { initMemo: memo }), P = model.params;
  const { first, count } = localExperts(epRank, cfg.moe.numExperts, L.ep);
  const out: RankReplica = { model, attn: [], mlp: [], moe: new Map(), expert: [], tpSharded: [], tpPartial: [] };
  const note = (m: { sharded: string[]; partial: string[] }) => {
    out.tpSharded.push(...m.sharded);
    if (L.tp > 1) out.tpPartial.push(...m.partial);
  };
  model.blocks.forEach((b, l) => {
    const a = tpAttention(cfg, P, `layers.${l}.attn`, L.tp, tpRank);
    note(a); out.attn.push(a.module);
    if (!(b.moe instanceof MoELayer)) {
      const m = tpMLP(P, `layers.${l}.mlp`, cfg.hiddenSize, cfg.denseIntermediateSize, L.tp, tpRank);
      note(m); out.mlp.push(m.module);
      return;
    }
    out.mlp.push(null);
    const moe = b.moe, full = moe.experts, prefix = full.prefix;
    const slices = [full.w1, full.w3, full.w2].map((w) => tf.slice(w, [first, 0, 0], [count, -1, -1]));
    const tmp = new ParamStore();
    const experts = new GroupedExperts(prefix, count, cfg.hiddenSize, cfg.moe.expertHiddenSize, tmp, () => slices.shift()!, 0);
    for (const n of ['w1', 'w3', 'w2']) {
      const name = `${prefix}.${n}`;
      P.vars.get(name)!.dispose();
      P.vars.set(name, tmp.vars.get(name)!);
      out.expert.push(name);
    }
    tmp.vars.clear();
    // sequence-parallel MoE: router and shared expert see 1/tp of the tokens → partial gradients
    if (L.tp > 1) out.tpPartial.push(...P.names().filter((n) => n === moe.router.name || n.startsWith(`${moe.prefix}.shared.`)));
    out.moe.set(l, { layer: moe, experts });
  });
  if (L.tp > 1) for (const [name, kind] of [['embedding.weight', 'row'], ['lmHead.weight', 'column']] as const) {
    const full = P.get(name), shard = shardOf(full, kind, L.tp, tpRank);
    P.vars.set(name, tf.variable(shard, true, `${name}_tp${tpRank}_${uid++}`));
    shard.dispose(); full.dispose();
    out.tpSharded.push(name);
  }
  return out;
}
