// Tensor-parallel shards of the dense modules (Megatron ColumnParallelLinear / RowParallelLinear,
// moe-semantics §9), built by re-instantiating the model's own modules with a/tp heads or F/tp
// hidden units on sliced weights, so the forward/backward code is the single-device code:
//   attention (GQA): wq, wk, wv column-parallel (whole heads), wo row-parallel
//   attention (MLA): wq | wqB, wkvB column-parallel by heads, wo row-parallel; the down-projections
//                    wqA, wkvA and the latent norms are replicated ("duplicated") — their gradients
//                    are partial per TP rank and are all-reduced over TP with the data-parallel sum
//   SwiGLU MLP:      fc1 = [gate | up] column-parallel (each half split), fc2 row-parallel
// The input goes through f (copy, backward all-reduce), the output through g (all-reduce), see mappings.ts.
// Weights are head-major ([.., a·d] columns, [a·d, ..] rows), so a head block is a contiguous slice.
import { tf } from '../../backend/tf.ts';
import type { ModelConfig } from '../../model/config.ts';
import { ParamStore, type Module } from '../../model/module.ts';
import { seedOf } from '../../model/init.ts';
import { GQAttention } from '../../model/attention-gqa.ts';
import { MLAttention } from '../../model/attention-mla.ts';
import { SwiGLUMLP } from '../../model/mlp.ts';

export type ShardKind = 'column' | 'row' | 'fc1' | 'replicated';

const COLUMN = new Set(['wq', 'wk', 'wv', 'wqB', 'wkvB']);
const ROW = new Set(['wo', 'fc2']);

/** How parameter `name` (…attn.wq, …mlp.fc1, …) is split over TP. */
export function shardKind(name: string): ShardKind {
  const leaf = name.slice(name.lastIndexOf('.') + 1);
  if (COLUMN.has(leaf)) return 'column';
  if (ROW.has(leaf)) return 'row';
  if (leaf === 'fc1') return 'fc1';
  return 'replicated';
}

/** This TP rank's shard of a full weight. */
export function shardOf(full: tf.Tensor, kind: ShardKind, tp: number, rank: number): tf.Tensor {
  return tf.tidy(() => {
    if (kind === 'replicated' || tp === 1) return tf.clone(full);
    const [rows, cols] = full.shape as [number, number];
    if (kind === 'column') return tf.slice(full, [0, rank * cols / tp], [rows, cols / tp]);
    if (kind === 'row') return tf.slice(full, [rank * rows / tp, 0], [rows / tp, cols]);
    const F = cols / 2, f = F / tp;                                         // fc1 = [gate | up]
    return tf.concat([tf.slice(full, [0, rank * f], [rows, f]), tf.slice(full, [0, F + rank * f], [rows, f])], 1);
  });
}

export interface TPModule {
  module: Module;
  /** parameter names that are sharded (grads complete per rank) */
  sharded: string[];
  /** replicated parameters whose gradients are partial per TP rank */
  partial: string[];
}

/**
 * Rebuild `make(store, init)` as this rank's shard: weights come from `params` (the replica, full),
 * sharded ones replace the replica's variables, replicated ones are shared with it.
 */
function rebuild(params: ParamStore, tp: number, rank: number, names: string[], make: (store: ParamStore, init: (shape: number[], role: string, seed: number) => tf.Tensor) => Module): TPModule {
  const bySeed = new Map(names.map((n) => [seedOf(n), n]));
  const store = new ParamStore();
  const module = make(store, (_shape, _role, seed) => {
    const n = bySeed.get(seed);
    if (!n) throw new Error(`tensor parallel: no parameter for seed ${seed}`);
    return shardOf(params.get(n), shardKind(n), tp, rank);
  });
  const sharded: string[] = [], partial: string[] = [];
  for (const [n, v] of store.vars) {
    const full = params.get(n);
    if (tf.util.arraysEqual(v.shape, full.shape) && (tp === 1 || shardKind(n) === 'replicated')) {
      v.dispose();
      store.vars.set(n, full);                       // share the replica's variable
      partial.push(n);
    } else {
      full.dispose();
      params.vars.set(n, v);                         // the replica now holds the shard
      sharded.push(n);
    }
  }
  return { module, sharded, partial };
}

/** This rank's attention shard (a/tp heads). With tp = 1 it is an equivalent copy sharing the weights. */
export function tpAttention(cfg: ModelConfig, params: ParamStore, prefix: string, tp: number, rank: number): TPModule {
  const local: ModelConfig = { ...cfg, numHeads: cfg.numHeads / tp, numKvHeads: cfg.attention === 'gqa' ? cfg.numKvHeads / tp : cfg.numKvHeads };
  const names = params.names().filter((n) => n.startsWith(`${prefix}.`));
  const r = rebuild(params, tp, rank, names, (store, init) =>
    cfg.attention === 'mla' ? new MLAttention(local, store, prefix, init as never) : new GQAttention(local, store, prefix, init as never));
  if (cfg.attention === 'gqa') return { ...r, partial: [] };   // GQA has no replicated weights
  return r;
}

/** This rank's SwiGLU MLP shard (F/tp hidden units). */
export function tpMLP(params: ParamStore, prefix: string, hidden: number, ffn: number, tp: number, rank: number): TPModule {
  const names = [`${prefix}.fc1`, `${prefix}.fc2`];
  return rebuild(params, tp, rank, names, (store, init) => new SwiGLUMLP(store, prefix, hidden, ffn / tp, init as never));
}
