// Distributed optimizer (Megatron DistributedOptimizer / ZeRO-1 with a reduce-scatter of gradients):
// each rank of a parameter's data-parallel group owns 1/n of it (flattened, zero-padded to a
// multiple of n) and keeps AdamW moments for that shard only.
//   step:  grads --reduce-scatter(sum)--> shard  →  AdamW on the shard  →  params --all-gather--> all ranks
// Bytes per rank: (n−1)/n·S for the reduce-scatter + (n−1)/n·S for the all-gather, the same as one
// ring all-reduce (perf-model §2.6), but optimizer memory is 2·S/n instead of 2·S (bytes/param 6 + 12/DP
// in Megatron's accounting). Dense parameters shard over the DP group, experts over the expert-DP group.
//
// The update is PyTorch AdamW, elementwise (same as src/train/optimizer.ts, re-stated here because
// src/parallel must not import src/train): p ← p·(1 − lr·wd) − lr · m̂ / (sqrt(v̂) + eps), decay only for
// parameters with meta.decay. Elementwise ⇒ sharding does not change the numbers.
import { tf } from '../../backend/tf.ts';
import type { Allocation } from '../../device/memory.ts';
import type { ProcessGroup } from '../../device/groups.ts';
import type { SimEvent } from '../../device/timeline.ts';
import type { ParallelModel } from '../parallel-model.ts';
import { gradOrZeros, uniqueGroups } from './grad-sync.ts';

export interface AdamWSettings { beta1: number; beta2: number; eps: number; weightDecay: number }

interface Shard { m: tf.Variable; v: tf.Variable; alloc: Allocation; rank: number }

export class DistributedAdamW {
  t = 0;
  /** state per (param name, world rank) */
  private readonly shards = new Map<string, Shard>();

  constructor(readonly model: ParallelModel, readonly cfg: AdamWSettings = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 }) {
    if (!model.opts.distributedOptimizer) throw new Error('DistributedAdamW needs a ParallelModel built with distributedOptimizer: true (gradients are reduce-scattered here, not all-reduced)');
    const W = model.layout.world;
    for (const name of model.params[0].names())
      for (const g of uniqueGroups([...Array(W).keys()], name, (n, r) => model.gradGroup(n, r))) {
        const size = shardSize(model.params[g.ranks[0]].get(name).size, g.ranks.length);
        g.ranks.forEach((r) => {
          const dev = model.cluster.device(r);
          const alloc = dev.hbm.alloc('optimizer', `adam ${name} shard`, 2 * size * (dev.elementBytes ?? 4));
          this.shards.set(`${name}@${r}`, { m: tf.variable(tf.zeros([size]), false), v: tf.variable(tf.zeros([size]), false), alloc, rank: r });
        });
      }
  }

  /** Reduce-scatter the (unsynchronised) gradients, update the shards, all-gather the parameters. */
  step(lr: number): void {
    this.t++;
    const { beta1: b1, beta2: b2, eps, weightDecay } = this.cfg;
    const bc1 = 1 - b1 ** this.t, bc2 = 1 - b2 ** this.t;
    const pm = this.model, W = pm.layout.world, comm = pm.cluster.comm;
    for (const name of pm.params[0].names()) {
      const decay = pm.params[0].meta.get(name)?.decay ? weightDecay : 0;
      for (const g of uniqueGroups([...Array(W).keys()], name, (n, r) => pm.gradGroup(n, r))) {
        const n = g.ranks.length, shape = pm.params[g.ranks[0]].get(name).shape;
        const numel = shape.reduce((a, b) => a * b, 1), size = shardSize(numel, n);
        const flatPad = (t: tf.Tensor) => tf.tidy(() => tf.pad(tf.reshape(t, [numel]), [[0, size * n - numel]]));
        const gIn = g.ranks.map((r) => flatPad(gradOrZeros(pm.grads[r], pm.params[r], name)));
        const rs = run(pm, g, () => comm.reduceScatter(g, gIn, { label: `dp.grads.rs ${name}`, after: pm.clock.after(g.ranks) }));
        tf.dispose(gIn);
        const newShards = g.ranks.map((r, i) => tf.tidy(() => {
          const st = this.shards.get(`${name}@${r}`)!;
          const p = tf.slice(flatPad(pm.params[r].get(name)), [i * size], [size]);
          const gr = rs[i];
          const m1 = tf.add(tf.mul(st.m, b1), tf.mul(gr, 1 - b1));
          const v1 = tf.add(tf.mul(st.v, b2), tf.mul(tf.square(gr), 1 - b2));
          const upd = tf.div(tf.div(m1, bc1), tf.add(tf.sqrt(tf.div(v1, bc2)), eps));
          st.m.assign(m1); st.v.assign(v1);
          return tf.sub(decay > 0 ? tf.mul(p, 1 - lr * decay) : p, tf.mul(upd, lr));
        }));
        tf.dispose(rs);
        const ag = run(pm, g, () => comm.allGather(g, newShards, { label: `dp.params.ag ${name}`, after: pm.clock.after(g.ranks) }));
        tf.dispose(newShards);
        g.ranks.forEach((r, i) => tf.tidy(() => { pm.params[r].get(name).assign(tf.reshape(tf.slice(ag[i], [0], [numel]), shape)); }));
        tf.dispose(ag);
      }
    }
  }

  /** Read-only view of the moment shards: key `${name}@${rank}` → that rank's slice of the flattened,
   *  zero-padded local parameter (size ⌈numel/n⌉, n = the parameter's gradient group). */
  momentShards(): ReadonlyMap<string, { readonly m: tf.Variable; readonly v: tf.Variable; readonly rank: number }> { return this.shards; }

  /**
   * Rank `rank`'s whole local moment `k` of parameter `name` (shape of pm.params[rank].get(name)): its
   * gradient group's slices concatenated, cut to numel. The caller disposes the result.
   */
  localMoment(name: string, rank: number, k: 'm' | 'v'): tf.Tensor {
    const g = this.model.gradGroup(name, rank), local = this.model.params[rank].get(name);
    return tf.tidy(() => tf.reshape(tf.slice(tf.concat(g.ranks.map((r) => this.shards.get(`${name}@${r}`)![k]), 0), [0], [local.size]), local.shape));
  }

  /** Optimizer-state bytes held per rank (moments of its shards). */
  stateBytes(rank: number): number {
    let b = 0;
    for (const s of this.shards.values()) if (s.rank === rank) b += s.alloc.bytes;
    return b;
  }

  dispose(): void {
    for (const s of this.shards.values()) { s.m.dispose(); s.v.dispose(); this.model.cluster.device(s.rank).hbm.release(s.alloc); }
    this.shards.clear();
  }
}

const shardSize = (numel: number, n: number) => Math.ceil(numel / n);

function run(pm: ParallelModel, g: ProcessGroup, f: () => { outputs: tf.Tensor[]; events: SimEvent[] }): tf.Tensor[] {
  const res = f();
  pm.clock.comm(g.ranks, res.events);
  return res.outputs;
}
