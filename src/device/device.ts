// A simulated accelerator: an HBM ledger, a view of its node's host ledger, tensors it holds (each
// tied to an allocation) and five streams on the cluster timeline (host copies: one per direction). Ops run real tfjs code on the host
// and charge simulated time from the pure cost model (cost.ts).
import { tf } from '../backend/tf.ts';
import { computeTime, gemmTime, hostCopyTime, memoryTime } from './cost.ts';
import { MemoryLedger, type Allocation, type MemoryCategory } from './memory.ts';
import type { DeviceSpec, Dtype } from './specs.ts';
import type { SimEvent, StreamName, Timeline } from './timeline.ts';

/** How an op is charged. */
export type OpCost =
  | { gemm: [m: number, n: number, k: number]; dtype?: Dtype }
  | { flops: number; dtype?: Dtype; efficiency?: number }
  | { bytes: number }
  | { seconds: number };

export interface OpOptions { after?: readonly SimEvent[]; stream?: StreamName; args?: Record<string, number | string> }

/** A tensor swapped out to host memory: its data lives in a JS typed array, its bytes in the host ledger. */
export interface SwapHandle {
  readonly device: number;
  readonly label: string;
  readonly category: MemoryCategory;
  readonly shape: number[];
  readonly dtype: tf.DataType;
  readonly data: tf.TypedArray;
  readonly hostAllocation: Allocation;
  /** the host-copy event that wrote it */
  readonly event: SimEvent;
}

export class SimDevice {
  readonly hbm: MemoryLedger;
  private held = new Map<tf.Tensor, Allocation>();

  constructor(
    readonly rank: number,
    readonly node: number,
    readonly localRank: number,
    readonly spec: DeviceSpec,
    /** the node's host DRAM ledger, shared by the node's devices */
    readonly host: MemoryLedger,
    readonly timeline: Timeline,
    /** simulated bytes per element (e.g. 2 for bf16); undefined = the tensor's real dtype size */
    readonly elementBytes?: number,
    readonly computeDtype: Dtype = 'bf16',
  ) {
    this.hbm = new MemoryLedger(`${this.name} HBM (node ${node}, local ${localRank})`, spec.hbmBytes);
  }

  get name(): string { return `npu${this.rank}`; }

  /** Simulated bytes of a tensor on this device. */
  bytesOf(t: tf.Tensor): number { return t.size * (this.elementBytes ?? (t.dtype === 'complex64' ? 8 : 4)); }

  // --- tensors and memory -------------------------------------------------------------------------

  /** Place `t` on this device: allocate its bytes under (category, label). Returns `t`. */
  hold<T extends tf.Tensor>(t: T, category: MemoryCategory, label: string): T {
    if (this.held.has(t)) throw new Error(`${this.name}: tensor '${label}' is already held (as '${this.held.get(t)!.label}')`);
    this.held.set(t, this.hbm.alloc(category, label, this.bytesOf(t)));
    return t;
  }

  holds(t: tf.Tensor): boolean { return this.held.has(t); }

  /** The allocation that holds `t`. */
  allocationOf(t: tf.Tensor): Allocation {
    const a = this.held.get(t);
    if (!a) throw new Error(`${this.name}: tensor ${t.shape} is not held by this device`);
    return a;
  }

  /** Release `t`'s bytes and (by default) dispose the tensor. */
  free(t: tf.Tensor, dispose = true): void {
    this.hbm.release(this.allocationOf(t));
    this.held.delete(t);
    if (dispose) t.dispose();
  }

  /** Free every held tensor (end of a run). */
  freeAll(): void { for (const t of [...this.held.keys()]) this.free(t); }

  get heldTensors(): number { return this.held.size; }

  // --- ops ------------------------------------------------------------------------------------------

  /** Simulated duration of an op on this device. */
  costOf(cost: OpCost): number {
    if ('gemm' in cost) return gemmTime(cost.gemm[0], cost.gemm[1], cost.gemm[2], this.spec, cost.dtype ?? this.computeDtype);
    if ('flops' in cost) return computeTime(cost.flops, this.spec, cost.dtype ?? this.computeDtype, cost.efficiency);
    if ('bytes' in cost) return memoryTime(cost.bytes, this.spec);
    return cost.seconds;
  }

  /** Charge an op (no tensors): schedule it on the compute stream (default) after `after`. */
  charge(name: string, cost: OpCost, opts: OpOptions = {}): SimEvent {
    const kind = 'bytes' in cost ? 'memory' : 'compute';
    return this.timeline.schedule({ device: this.rank, stream: opts.stream ?? 'compute', name, kind, duration: this.costOf(cost), after: opts.after, args: { ...opts.args } });
  }

  /** Run `fn` (real tensors) and charge it as one op. */
  run<T>(name: string, cost: OpCost, fn: () => T, opts: OpOptions = {}): { result: T; event: SimEvent } {
    const result = fn();
    return { result, event: this.charge(name, cost, opts) };
  }

  /** y = a·b for 2-D a [m, k], b [k, n], charged as a GEMM. The caller owns `result`. */
  matMul(name: string, a: tf.Tensor2D, b: tf.Tensor2D, opts: OpOptions = {}): { result: tf.Tensor2D; event: SimEvent } {
    const [m, k] = a.shape, n = b.shape[1];
    return this.run(name, { gemm: [m, n, k] }, () => tf.matMul(a, b), opts);
  }

  // --- swapping -------------------------------------------------------------------------------------

  /** Move a held tensor to host memory: HBM bytes freed, host 'swapped' bytes allocated, tensor disposed. */
  swapOut(t: tf.Tensor, opts: OpOptions = {}): SwapHandle {
    const a = this.allocationOf(t);
    const hostAllocation = this.host.alloc('swapped', `${this.name}:${a.label}`, a.bytes);
    const event = this.timeline.schedule({ device: this.rank, stream: 'host-copy', name: `swap-out ${a.label}`, kind: 'copy', duration: hostCopyTime(a.bytes, this.spec), after: opts.after, args: { bytes: a.bytes } });
    const h: SwapHandle = { device: this.rank, label: a.label, category: a.category, shape: [...t.shape], dtype: t.dtype, data: t.dataSync(), hostAllocation, event };
    this.free(t);
    return h;
  }

  /** Bring a swapped tensor back (held again under its original category). The caller owns `tensor`. */
  swapIn(h: SwapHandle, opts: OpOptions = {}): { tensor: tf.Tensor; event: SimEvent } {
    if (h.device !== this.rank) throw new Error(`${this.name}: swap handle '${h.label}' belongs to npu${h.device}`);
    const tensor = this.hold(tf.tensor(h.data, h.shape, h.dtype), h.category, h.label);
    this.host.release(h.hostAllocation);
    const event = this.timeline.schedule({ device: this.rank, stream: 'host-copy-in', name: `swap-in ${h.label}`, kind: 'copy', duration: hostCopyTime(h.hostAllocation.bytes, this.spec), after: [h.event, ...(opts.after ?? [])], args: { bytes: h.hostAllocation.bytes } });
    return { tensor, event };
  }
}
