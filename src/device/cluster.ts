// A simulated cluster: nodes x devices of one spec, a shared timeline, a communication ledger, the
// collectives, and process groups in Megatron rank order. Device (global rank) r sits on node
// floor(r / devicesPerNode) with local rank r % devicesPerNode.
import { ExpertCollectives } from './expert-collectives.ts';
import { CommLedger } from './comm-ledger.ts';
import { SimDevice } from './device.ts';
import { groupOf, groupsOf, resolveDims, type GroupKind, type ParallelDims, type ProcessGroup, type ResolvedDims } from './groups.ts';
import { formatBytes, MemoryLedger } from './memory.ts';
import { DTYPE_BYTES, specProblems, type DeviceSpec, type Dtype, type LinkSpec } from './specs.ts';
import { Timeline } from './timeline.ts';

export interface ClusterOptions {
  spec: DeviceSpec;
  nodes: number;
  /** defaults to spec.devicesPerNode */
  devicesPerNode?: number;
  /** simulated element type for memory and wire bytes (e.g. 'bf16'); default: the tensors' real size (4 bytes) */
  dtype?: Dtype;
  /** dtype whose peak FLOPS compute ops are charged at (default 'bf16') */
  computeDtype?: Dtype;
}

/** A parallel layout bound to a cluster: groups by kind for any rank. */
export interface ParallelLayout {
  readonly dims: ResolvedDims;
  group(kind: GroupKind, rank: number): ProcessGroup;
  groups(kind: GroupKind): ProcessGroup[];
}

export class Cluster {
  readonly spec: DeviceSpec;
  readonly nodes: number;
  readonly devicesPerNode: number;
  readonly devices: SimDevice[];
  /** one host DRAM ledger per node */
  readonly hosts: MemoryLedger[];
  readonly timeline = new Timeline();
  readonly commLedger = new CommLedger();
  /** collectives (collectives.ts) plus the MoE dispatch/combine (expert-collectives.ts) */
  readonly comm: ExpertCollectives;

  constructor(opts: ClusterOptions) {
    const problems = specProblems(opts.spec).map((p) => `spec ${p}`);
    const dpn = opts.devicesPerNode ?? opts.spec?.devicesPerNode;
    if (!(Number.isInteger(opts.nodes) && opts.nodes >= 1)) problems.push(`nodes: expected an integer >= 1, got ${opts.nodes}`);
    if (!(Number.isInteger(dpn) && dpn >= 1)) problems.push(`devicesPerNode: expected an integer >= 1, got ${dpn}`);
    if (opts.dtype !== undefined && !(opts.dtype in DTYPE_BYTES)) problems.push(`dtype: unknown '${opts.dtype}'`);
    if (problems.length) throw new Error(`invalid cluster, ${problems.length} problem(s):\n  - ${problems.join('\n  - ')}`);
    this.spec = opts.spec;
    this.nodes = opts.nodes;
    this.devicesPerNode = dpn;
    this.hosts = Array.from({ length: this.nodes }, (_, n) => new MemoryLedger(`node ${n} host memory`, this.spec.hostMemoryBytes));
    const eb = opts.dtype ? DTYPE_BYTES[opts.dtype] : undefined;
    this.devices = Array.from({ length: this.nodes * dpn }, (_, r) =>
      new SimDevice(r, Math.floor(r / dpn), r % dpn, this.spec, this.hosts[Math.floor(r / dpn)], this.timeline, eb, opts.computeDtype ?? 'bf16'));
    this.comm = new ExpertCollectives(this);
  }

  get size(): number { return this.devices.length; }

  device(rank: number): SimDevice {
    const d = this.devices[rank];
    if (!d) throw new Error(`rank ${rank} is outside the cluster of ${this.size} devices`);
    return d;
  }

  nodeOf(rank: number): number { return this.device(rank).node; }

  /** The link between two devices (intra-node or inter-node). */
  linkBetween(a: number, b: number): LinkSpec { return this.nodeOf(a) === this.nodeOf(b) ? this.spec.intraNode : this.spec.interNode; }

  /** An ad-hoc group. */
  group(kind: string, ranks: readonly number[]): ProcessGroup {
    for (const r of ranks) this.device(r);
    return { kind, ranks: [...ranks] };
  }

  /** Every device of the cluster as one group. */
  world(): ProcessGroup { return { kind: 'world', ranks: this.devices.map((d) => d.rank) }; }

  /** Bind a TP/CP/DP/PP/EP/ETP layout (Megatron rank order, groups.ts) to this cluster. */
  parallel(dims: ParallelDims): ParallelLayout {
    const resolved = resolveDims(this.size, dims);
    return {
      dims: resolved,
      group: (kind, rank) => groupOf(kind, rank, resolved),
      groups: (kind) => groupsOf(kind, resolved).map((ranks) => ({ kind, ranks })),
    };
  }

  /** Start a new measurement window: clear the timeline and the communication ledger, reset peaks. Held memory stays. */
  reset(): void {
    this.timeline.clear();
    this.commLedger.clear();
    for (const d of this.devices) d.hbm.resetPeak();
    for (const h of this.hosts) h.resetPeak();
  }

  /** Plain-data memory report: per device HBM and per node host ledgers. */
  memoryReport(): { devices: ReturnType<MemoryLedger['snapshot']>[]; hosts: ReturnType<MemoryLedger['snapshot']>[] } {
    return { devices: this.devices.map((d) => d.hbm.snapshot()), hosts: this.hosts.map((h) => h.snapshot()) };
  }

  /** One line per device: used / peak / capacity. */
  memoryText(): string {
    return this.devices.map((d) => `${d.name.padEnd(6)} node ${d.node}  used ${formatBytes(d.hbm.used).padStart(11)}  peak ${formatBytes(d.hbm.peak).padStart(11)}  of ${formatBytes(d.hbm.capacity)}`).join('\n');
  }

  /** Chrome / Perfetto trace of everything so far; devices named 'npuR (node N)'. */
  trace(): ReturnType<Timeline['toChromeTrace']> {
    return this.timeline.toChromeTrace((r) => `${this.devices[r]?.name ?? r} (node ${this.devices[r]?.node})`);
  }
}
