// Collectives over simulated devices that move real tfjs tensors. Each takes one tensor per group
// rank (inputs[i] lives on group.ranks[i]) and returns one new tensor per rank; the caller owns both
// inputs and outputs, intermediates are disposed here. Every collective starts at the same time on
// all ranks (max over ranks of stream free and `after`), charges the alpha-beta time of cost.ts, records
// its bytes per link in the communication ledger, and briefly holds its receive buffers as 'comm'
// memory so that communication buffers show up in peak memory.
//
// Link model: a group inside one node uses the intra-node link and the 'comm-intra' stream; a group
// that spans nodes is bound by the inter-node link and runs on 'comm-inter'. Ring collectives record
// each rank's ring traffic on the link to its ring successor (group order).
import { tf } from '../backend/tf.ts';
import { flatTraffic } from './a2a-plan.ts';
import type { CommLedger, LinkKind } from './comm-ledger.ts';
import { allGatherTime, allReduceTime, allToAllVTime, broadcastTime, reduceScatterTime, sendRecvTime, twoTierAllToAllTime } from './cost.ts';
import type { SimDevice } from './device.ts';
import type { ProcessGroup } from './groups.ts';
import type { Allocation, MemoryCategory } from './memory.ts';
import type { DeviceSpec, LinkSpec } from './specs.ts';
import type { SimEvent, StreamName, Timeline } from './timeline.ts';

/** What the collectives need from a cluster. */
export interface CommContext {
  readonly devices: readonly SimDevice[];
  readonly timeline: Timeline;
  readonly commLedger: CommLedger;
  readonly spec: DeviceSpec;
}

export interface CollectiveOptions {
  /** names the events and ledger records */
  label?: string;
  /** events that must finish before the collective starts (on any rank) */
  after?: readonly SimEvent[];
  /** hold each output on its rank's device under this memory category (label = `label`) */
  holdAs?: MemoryCategory;
}
export type ReduceOp = 'sum' | 'mean' | 'max';
export interface CollectiveResult { outputs: tf.Tensor[]; events: SimEvent[]; seconds: number }

export class Collectives {
  constructor(protected readonly ctx: CommContext) {}

  // --- helpers ----------------------------------------------------------------------------------------

  protected dev(rank: number): SimDevice {
    const d = this.ctx.devices[rank];
    if (!d) throw new Error(`rank ${rank} is outside the cluster of ${this.ctx.devices.length} devices`);
    return d;
  }

  protected check(op: string, group: ProcessGroup, inputs: readonly tf.Tensor[], sameShape: boolean): void {
    const problems: string[] = [];
    const n = group.ranks.length;
    if (n === 0) problems.push('empty group');
    if (new Set(group.ranks).size !== n) problems.push(`duplicate ranks in group [${group.ranks}]`);
    for (const r of group.ranks) if (!this.ctx.devices[r]) problems.push(`rank ${r} is outside the cluster of ${this.ctx.devices.length} devices`);
    if (inputs.length !== n) problems.push(`got ${inputs.length} input tensors for a group of ${n} ranks`);
    inputs.forEach((t, i) => {
      if (t.isDisposed) problems.push(`input ${i} is disposed`);
      else if (t.dtype !== inputs[0].dtype) problems.push(`input ${i} has dtype ${t.dtype}, input 0 has ${inputs[0].dtype}`);
      else if (sameShape && !tf.util.arraysEqual(t.shape, inputs[0].shape)) problems.push(`input ${i} has shape [${t.shape}], input 0 has [${inputs[0].shape}]`);
    });
    if (problems.length) throw new Error(`${op} over ${group.kind} group: ${problems.join('; ')}`);
  }

  /** Whether the group spans several nodes, and the link that bounds it. */
  groupLink(group: ProcessGroup): { spans: boolean; link: LinkSpec; stream: StreamName } {
    const spans = new Set(group.ranks.map((r) => this.dev(r).node)).size > 1;
    return spans ? { spans, link: this.ctx.spec.interNode, stream: 'comm-inter' } : { spans, link: this.ctx.spec.intraNode, stream: 'comm-intra' };
  }

  linkKind(a: number, b: number): LinkKind { return this.dev(a).node === this.dev(b).node ? 'intra' : 'inter'; }

  /** Schedule one event per rank, all starting together. */
  protected emit(group: ProcessGroup, stream: StreamName, name: string, seconds: number, after: readonly SimEvent[] = [], args: Record<string, number | string> = {}): SimEvent[] {
    const tl = this.ctx.timeline;
    const start = group.ranks.reduce((t, r) => Math.max(t, tl.readyTime(r, stream, after)), 0);
    return group.ranks.map((r) => tl.schedule({ device: r, stream, name, kind: 'comm', duration: seconds, after, notBefore: start, args: { group: group.kind, ...args } }));
  }

  /** Hold receive buffers as 'comm' memory for the op, then release them (peak accounting). */
  protected buffers(group: ProcessGroup, bytes: readonly number[], label: string): void {
    const held: Array<[SimDevice, Allocation]> = [];
    try {
      group.ranks.forEach((r, i) => { const d = this.dev(r); held.push([d, d.hbm.alloc('comm', label, bytes[i])]); });
    } finally {
      for (const [d, a] of held) d.hbm.release(a);
    }
  }

  protected record(op: string, group: ProcessGroup, src: number, dst: number, bytes: number, label: string): void {
    if (src !== dst) this.ctx.commLedger.add({ op, group: group.kind, link: this.linkKind(src, dst), src, dst, bytes, label });
  }

  private ring(op: string, group: ProcessGroup, bytesPerRank: (i: number) => number, label: string): void {
    const n = group.ranks.length;
    for (let i = 0; i < n && n > 1; i++) this.record(op, group, group.ranks[i], group.ranks[(i + 1) % n], bytesPerRank(i), label);
  }

  private reduce(inputs: readonly tf.Tensor[], op: ReduceOp): tf.Tensor {
    return tf.tidy(() => {
      if (op === 'max') return inputs.slice(1).reduce((a: tf.Tensor, b) => tf.maximum(a, b), inputs[0]).clone();
      const s = inputs.length === 1 ? inputs[0].clone() : tf.addN(inputs as tf.Tensor[]);
      return op === 'mean' ? tf.div(s, inputs.length) : s;
    });
  }

  /** Hold outputs on their ranks' devices when asked (opts.holdAs). */
  protected place<R extends { outputs: tf.Tensor[] }>(group: ProcessGroup, opts: CollectiveOptions, r: R): R {
    if (!opts.holdAs) return r;
    let i = 0;
    try {
      for (; i < r.outputs.length; i++) this.dev(group.ranks[i]).hold(r.outputs[i], opts.holdAs, opts.label ?? 'collective output');
    } catch (e) { // out of memory: undo, so nothing leaks
      for (let j = 0; j < i; j++) this.dev(group.ranks[j]).free(r.outputs[j], false);
      tf.dispose(r.outputs);
      throw e;
    }
    return r;
  }

  /** n outputs that are independent handles on the same values (tensors are immutable). */
  private replicate(t: tf.Tensor, n: number): tf.Tensor[] {
    return [t, ...Array.from({ length: n - 1 }, () => t.clone())];
  }

  // --- collectives ----------------------------------------------------------------------------------

  /** Every rank gets op(inputs). S = bytes of one input. */
  allReduce(group: ProcessGroup, inputs: readonly tf.Tensor[], opts: CollectiveOptions & { op?: ReduceOp } = {}): CollectiveResult {
    this.check('allReduce', group, inputs, true);
    const n = group.ranks.length, label = opts.label ?? 'allReduce';
    const S = this.dev(group.ranks[0]).bytesOf(inputs[0]);
    const { link, stream } = this.groupLink(group);
    const seconds = allReduceTime(S, n, link);
    this.buffers(group, group.ranks.map(() => S), label);
    const outputs = this.replicate(this.reduce(inputs, opts.op ?? 'sum'), n);
    this.ring('allReduce', group, () => 2 * (n - 1) / n * S, label);
    return this.place(group, opts, { outputs, events: this.emit(group, stream, `allReduce ${label}`, seconds, opts.after, { bytes: S }), seconds });
  }

  /** Rank i gets chunk i (along axis 0) of op(inputs). Axis 0 must divide by the group size. */
  reduceScatter(group: ProcessGroup, inputs: readonly tf.Tensor[], opts: CollectiveOptions & { op?: ReduceOp } = {}): CollectiveResult {
    this.check('reduceScatter', group, inputs, true);
    const n = group.ranks.length, label = opts.label ?? 'reduceScatter';
    if (inputs[0].rank === 0 || inputs[0].shape[0] % n !== 0) throw new Error(`reduceScatter over ${group.kind} group: axis 0 of shape [${inputs[0].shape}] does not divide by ${n} ranks`);
    const S = this.dev(group.ranks[0]).bytesOf(inputs[0]);
    const { link, stream } = this.groupLink(group);
    const seconds = reduceScatterTime(S, n, link);
    this.buffers(group, group.ranks.map(() => S / n), label);
    const outputs = tf.tidy(() => {
      const red = this.reduce(inputs, opts.op ?? 'sum');
      return n === 1 ? [red] : tf.split(red, n, 0);
    });
    this.ring('reduceScatter', group, () => (n - 1) / n * S, label);
    return this.place(group, opts, { outputs, events: this.emit(group, stream, `reduceScatter ${label}`, seconds, opts.after, { bytes: S }), seconds });
  }

  /** Every rank gets concat(inputs, axis 0); inputs may differ along axis 0 (all-gather-v). */
  allGather(group: ProcessGroup, inputs: readonly tf.Tensor[], opts: CollectiveOptions = {}): CollectiveResult {
    this.check('allGather', group, inputs, false);
    const n = group.ranks.length, label = opts.label ?? 'allGather';
    const tail = inputs[0].shape.slice(1);
    inputs.forEach((t, i) => { if (t.rank === 0 || !tf.util.arraysEqual(t.shape.slice(1), tail)) throw new Error(`allGather over ${group.kind} group: input ${i} shape [${t.shape}] does not match [*, ${tail}]`); });
    const chunk = inputs.map((t, i) => this.dev(group.ranks[i]).bytesOf(t));
    const total = chunk.reduce((a, b) => a + b, 0);
    const { link, stream } = this.groupLink(group);
    const seconds = allGatherTime(n * Math.max(...chunk), n, link); // a ring moves the largest chunk each step
    this.buffers(group, group.ranks.map(() => total), label);
    const outputs = this.replicate(n === 1 ? inputs[0].clone() : tf.concat(inputs as tf.Tensor[], 0), n);
    this.ring('allGather', group, (i) => total - chunk[(i + 1) % n], label);
    return this.place(group, opts, { outputs, events: this.emit(group, stream, `allGather ${label}`, seconds, opts.after, { bytes: total }), seconds });
  }

  /**
   * Rank d gets concat over sources s of rows inputSplits[s][d] of inputs[s] (axis 0), in source order
   * (Megatron all-to-all-v). Without splits, axis 0 is split evenly.
   */
  allToAllV(group: ProcessGroup, inputs: readonly tf.Tensor[], inputSplits?: readonly (readonly number[])[], opts: CollectiveOptions = {}): CollectiveResult {
    this.check('allToAllV', group, inputs, false);
    const n = group.ranks.length, label = opts.label ?? 'allToAllV', op = 'allToAllV';
    const splits = inputSplits ?? inputs.map((t) => {
      if (t.rank === 0 || t.shape[0] % n !== 0) throw new Error(`allToAllV over ${group.kind} group: no splits given and axis 0 of [${t.shape}] does not divide by ${n}`);
      return new Array<number>(n).fill(t.shape[0] / n);
    });
    const problems: string[] = [];
    const tail = inputs[0].shape.slice(1);
    inputs.forEach((t, s) => {
      if (!splits[s] || splits[s].length !== n) problems.push(`inputSplits[${s}] must have ${n} entries`);
      else if (splits[s].some((x) => !(Number.isInteger(x) && x >= 0))) problems.push(`inputSplits[${s}] must be integers >= 0, got [${splits[s]}]`);
      else if (splits[s].reduce((a, b) => a + b, 0) !== t.shape[0]) problems.push(`inputSplits[${s}] sums to ${splits[s].reduce((a, b) => a + b, 0)} but input ${s} has ${t.shape[0]} rows`);
      if (!tf.util.arraysEqual(t.shape.slice(1), tail)) problems.push(`input ${s} shape [${t.shape}] does not match [*, ${tail}]`);
    });
    if (problems.length) throw new Error(`allToAllV over ${group.kind} group: ${problems.join('; ')}`);

    const rowBytes = (s: number) => (inputs[s].shape[0] > 0 ? this.dev(group.ranks[s]).bytesOf(inputs[s]) / inputs[s].shape[0] : 0);
    const bytes = splits.map((row, s) => row.map((c) => c * rowBytes(s)));
    const nodeOf = group.ranks.map((r) => this.dev(r).node);
    const traffic = flatTraffic(nodeOf, bytes);
    const { spans, stream } = this.groupLink(group);
    const seconds = spans
      ? twoTierAllToAllTime(traffic, this.ctx.spec.intraNode, this.ctx.spec.interNode)
      : allToAllVTime(traffic.maxIntraBytes, n, this.ctx.spec.intraNode);
    this.buffers(group, group.ranks.map((_, d) => bytes.reduce((a, row) => a + row[d], 0)), label);

    const outputs = tf.tidy(() => {
      const pieces = inputs.map((t, s) => (n === 1 ? [t] : tf.split(t, splits[s] as number[], 0)));
      return group.ranks.map((_, d) => {
        const parts = pieces.map((p) => p[d]).filter((p) => p.shape[0] > 0);
        return parts.length === 0 ? tf.zeros([0, ...tail], inputs[0].dtype) : parts.length === 1 ? parts[0].clone() : tf.concat(parts, 0);
      });
    });
    for (let s = 0; s < n; s++) for (let d = 0; d < n; d++) this.record(op, group, group.ranks[s], group.ranks[d], bytes[s][d], label);
    return this.place(group, opts, { outputs, events: this.emit(group, stream, `allToAllV ${label}`, seconds, opts.after, { interBytes: traffic.totalInterBytes, intraBytes: traffic.totalIntraBytes }), seconds });
  }

  /** Every rank gets a copy of `input` (held by group rank `root`). */
  broadcast(group: ProcessGroup, input: tf.Tensor, root = 0, opts: CollectiveOptions = {}): CollectiveResult {
    const n = group.ranks.length, label = opts.label ?? 'broadcast';
    if (!(Number.isInteger(root) && root >= 0 && root < n)) throw new Error(`broadcast over ${group.kind} group: root ${root} outside [0, ${n})`);
    this.check('broadcast', group, group.ranks.map(() => input), true);
    const S = this.dev(group.ranks[root]).bytesOf(input);
    const { link, stream } = this.groupLink(group);
    const seconds = broadcastTime(S, n, link);
    this.buffers(group, group.ranks.map(() => S), label);
    const outputs = this.replicate(input.clone(), n);
    // pipelined chain starting at the root
    for (let i = 0; i < n - 1; i++) this.record('broadcast', group, group.ranks[(root + i) % n], group.ranks[(root + i + 1) % n], S, label);
    return this.place(group, opts, { outputs, events: this.emit(group, stream, `broadcast ${label}`, seconds, opts.after, { bytes: S }), seconds });
  }

  /** Point-to-point: a copy of `input` (on rank `src`) arrives on rank `dst`. */
  sendRecv(src: number, dst: number, input: tf.Tensor, opts: CollectiveOptions & { group?: string } = {}): { output: tf.Tensor; events: SimEvent[]; seconds: number } {
    const group: ProcessGroup = { kind: opts.group ?? 'p2p', ranks: src === dst ? [src] : [src, dst] };
    this.check('sendRecv', group, group.ranks.map(() => input), true);
    const label = opts.label ?? 'sendRecv';
    const S = this.dev(src).bytesOf(input);
    const { link, stream } = this.groupLink(group);
    const seconds = src === dst ? 0 : sendRecvTime(S, link);
    if (src !== dst) this.buffers({ kind: group.kind, ranks: [dst] }, [S], label);
    this.record('sendRecv', group, src, dst, S, label);
    const output = input.clone();
    if (opts.holdAs) this.dev(dst).hold(output, opts.holdAs, label);
    return { output, events: this.emit(group, stream, `sendRecv ${label}`, seconds, opts.after, { bytes: S, src, dst }), seconds };
  }
}
