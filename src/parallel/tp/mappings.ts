// Tensor-parallel region mappings as explicit forward/backward pairs (Megatron tensor_parallel/mappings.py,
// moe-semantics §9). Each takes one tensor per world rank (xs[r]) and works group by group over the TP
// groups; outputs are new tensors (the caller disposes inputs and outputs).
//
// | mapping                 | forward               | backward              |
// | copyToTP        ("f")   | identity              | all-reduce            |
// | reduceFromTP    ("g")   | all-reduce            | identity              |
// | scatterToSP             | split first dim       | all-gather first dim  |
// | gatherFromSP            | all-gather first dim  | split first dim       |
// | gatherToTP      (SP→TP) | all-gather first dim  | reduce-scatter        |
// | reduceScatterToSP (TP→SP) | reduce-scatter      | all-gather first dim  |
// The last two are Megatron's sequence parallelism around the dense layers (before a column-parallel
// input, after a row-parallel output): the TP region's input gradients are partial per TP rank, hence the
// reduce-scatter backward of gatherToTP.
// gatherFromSP's backward is a plain split (not a reduce-scatter) because its output feeds
// TP-replicated computation whose gradient is already complete and identical on every TP rank.
import { tf } from '../../backend/tf.ts';
import type { Cluster } from '../../device/cluster.ts';
import type { ProcessGroup } from '../../device/groups.ts';
import type { StepClock } from '../clock.ts';

export class TPMappings {
  constructor(readonly cluster: Cluster, readonly tpGroups: ProcessGroup[], readonly clock: StepClock) {}

  get size(): number { return this.tpGroups[0].ranks.length; }

  /** Index of `rank` in its TP group. */
  tpRank(rank: number): number { return this.tpGroups.find((g) => g.ranks.includes(rank))!.ranks.indexOf(rank); }

  private allReduce(xs: tf.Tensor[], label: string): tf.Tensor[] {
    const out: tf.Tensor[] = new Array(xs.length);
    for (const g of this.tpGroups) {
      if (g.ranks.length === 1) { out[g.ranks[0]] = tf.clone(xs[g.ranks[0]]); continue; }
      const res = this.cluster.comm.allReduce(g, g.ranks.map((r) => xs[r]), { label, after: this.clock.after(g.ranks) });
      this.clock.comm(g.ranks, res.events);
      g.ranks.forEach((r, i) => { out[r] = res.outputs[i]; });
    }
    return out;
  }

  private allGather(xs: tf.Tensor[], label: string): tf.Tensor[] {
    const out: tf.Tensor[] = new Array(xs.length);
    for (const g of this.tpGroups) {
      if (g.ranks.length === 1) { out[g.ranks[0]] = tf.clone(xs[g.ranks[0]]); continue; }
      const res = this.cluster.comm.allGather(g, g.ranks.map((r) => xs[r]), { label, after: this.clock.after(g.ranks) });
      this.clock.comm(g.ranks, res.events);
      g.ranks.forEach((r, i) => { out[r] = res.outputs[i]; });
    }
    return out;
  }

  private reduceScatter(xs: tf.Tensor[], label: string): tf.Tensor[] {
    const out: tf.Tensor[] = new Array(xs.length);
    for (const g of this.tpGroups) {
      if (g.ranks.length === 1) { out[g.ranks[0]] = tf.clone(xs[g.ranks[0]]); continue; }
      const res = this.cluster.comm.reduceScatter(g, g.ranks.map((r) => xs[r]), { label, after: this.clock.after(g.ranks) });
      this.clock.comm(g.ranks, res.events);
      g.ranks.forEach((r, i) => { out[r] = res.outputs[i]; });
    }
    return out;
  }

  private split(xs: tf.Tensor[]): tf.Tensor[] {
    const n = this.size;
    return xs.map((x, r) => tf.tidy(() => {
      if (x.shape[0] % n !== 0) throw new Error(`sequence-parallel split: first dim ${x.shape[0]} does not divide by tp=${n}`);
      const c = x.shape[0] / n;
      return tf.slice(x, [this.tpRank(r) * c], [c]);
    }));
  }

  /** f: forward identity (a copy). */
  copyToTP(xs: tf.Tensor[]): tf.Tensor[] { return xs.map((x) => tf.clone(x)); }
  /** f backward: all-reduce the input gradients. */
  copyToTPBackward(dys: tf.Tensor[], label: string): tf.Tensor[] { return this.allReduce(dys, `tp.f.bwd ${label}`); }

  /** g: forward all-reduce of the partial outputs. */
  reduceFromTP(xs: tf.Tensor[], label: string): tf.Tensor[] { return this.allReduce(xs, `tp.g.fwd ${label}`); }
  /** g backward: identity. */
  reduceFromTPBackward(dys: tf.Tensor[]): tf.Tensor[] { return dys.map((d) => tf.clone(d)); }

  /** Enter the sequence-parallel region: rank i keeps rows [i·n/tp, (i+1)·n/tp). */
  scatterToSP(xs: tf.Tensor[]): tf.Tensor[] { return this.split(xs); }
  scatterToSPBackward(dys: tf.Tensor[], label: string): tf.Tensor[] { return this.allGather(dys, `tp.sp.bwd ${label}`); }

  /** Leave the sequence-parallel region: all-gather rows. */
  gatherFromSP(xs: tf.Tensor[], label: string): tf.Tensor[] { return this.allGather(xs, `tp.sp.fwd ${label}`); }
  gatherFromSPBackward(dys: tf.Tensor[]): tf.Tensor[] { return this.split(dys); }

  /** SP → TP region (before a column-parallel layer): all-gather rows; backward reduce-scatters the partial input gradients. */
  gatherToTP(xs: tf.Tensor[], label: string): tf.Tensor[] { return this.allGather(xs, `tp.sp.ag ${label}`); }
  gatherToTPBackward(dys: tf.Tensor[], label: string): tf.Tensor[] { return this.reduceScatter(dys, `tp.sp.bwd.rs ${label}`); }

  /** TP → SP region (after a row-parallel layer): reduce-scatter the partial outputs; backward all-gathers. */
  reduceScatterToSP(xs: tf.Tensor[], label: string): tf.Tensor[] { return this.reduceScatter(xs, `tp.sp.rs ${label}`); }
  reduceScatterToSPBackward(dys: tf.Tensor[], label: string): tf.Tensor[] { return this.allGather(dys, `tp.sp.bwd.ag ${label}`); }

  /** Plain all-reduce over TP (vocab-parallel cross-entropy statistics, embedding partial sums). */
  allReduceTP(xs: tf.Tensor[], label: string, op: 'sum' | 'max' = 'sum'): tf.Tensor[] {
    if (op === 'sum') return this.allReduce(xs, label);
    const out: tf.Tensor[] = new Array(xs.length);
    for (const g of this.tpGroups) {
      if (g.ranks.length === 1) { out[g.ranks[0]] = tf.clone(xs[g.ranks[0]]); continue; }
      const res = this.cluster.comm.allReduce(g, g.ranks.map((r) => xs[r]), { label, op, after: this.clock.after(g.ranks) });
      this.clock.comm(g.ranks, res.events);
      g.ranks.forEach((r, i) => { out[r] = res.outputs[i]; });
    }
    return out;
  }
}
