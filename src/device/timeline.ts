// The event timeline of a simulated cluster. Every op and transfer is an event on one stream of one
// device; an event starts at max(stream free, dependencies done, notBefore). Exports Chrome / Perfetto
// Trace Event Format JSON and a per-stream summary (busy, idle, exposed communication, overlap).
import * as aq from 'arquero';

// Host copies have one stream per direction: PCIe / HCCS host links are full duplex, so a swap-out
// (D2H, 'host-copy') and a prefetch (H2D, 'host-copy-in') run concurrently, each in order.
export const STREAMS = ['compute', 'comm-intra', 'comm-inter', 'host-copy', 'host-copy-in'] as const;
export type StreamName = (typeof STREAMS)[number];
export type EventKind = 'compute' | 'memory' | 'comm' | 'copy' | 'idle-wait';

export interface SimEvent {
  readonly id: number;
  readonly device: number;
  readonly stream: StreamName;
  readonly name: string;
  readonly kind: EventKind;
  readonly start: number; // seconds
  readonly end: number;   // seconds
  readonly deps: readonly number[];
  readonly args: Readonly<Record<string, number | string>>;
}

export interface ScheduleRequest {
  device: number;
  stream: StreamName;
  name: string;
  kind: EventKind;
  duration: number;
  /** Events that must finish first (any device, any stream). */
  after?: readonly SimEvent[];
  /** Earliest start (used to start a collective at the same time on every rank). */
  notBefore?: number;
  args?: Record<string, number | string>;
}

interface Interval { start: number; end: number }

/** Union of intervals, sorted and merged. */
export function mergeIntervals(xs: Interval[]): Interval[] {
  const s = [...xs].filter((x) => x.end > x.start).sort((a, b) => a.start - b.start);
  const out: Interval[] = [];
  for (const x of s) {
    const last = out[out.length - 1];
    if (last && x.start <= last.end) last.end = Math.max(last.end, x.end);
    else out.push({ start: x.start, end: x.end });
  }
  return out;
}

/** Total length of `a` not covered by `b` (both merged). */
export function uncoveredLength(a: Interval[], b: Interval[]): number {
  let total = 0, j = 0;
  for (const x of a) {
    let cur = x.start;
    while (j < b.length && b[j].end <= cur) j++;
    let k = j;
    while (k < b.length && b[k].start < x.end) {
      if (b[k].start > cur) total += b[k].start - cur;
      cur = Math.max(cur, b[k].end);
      k++;
    }
    if (cur < x.end) total += x.end - cur;
  }
  return total;
}

const length = (xs: Interval[]): number => xs.reduce((s, x) => s + (x.end - x.start), 0);

export interface StreamSummary {
  device: number; stream: StreamName; events: number; busy: number; idle: number; utilization: number;
}
export interface DeviceCommSummary {
  device: number; compute: number; comm: number; exposedComm: number; overlapRatio: number;
  /** host-copy (swap) time, and the part of it not hidden behind compute */
  hostCopy: number; exposedHostCopy: number;
  makespan: number;
}

export class Timeline {
  readonly events: SimEvent[] = [];
  private free = new Map<string, number>();

  /** When `stream` of `device` is next free. */
  streamFree(device: number, stream: StreamName): number { return this.free.get(`${device}/${stream}`) ?? 0; }

  /** Earliest start on (device, stream) given dependencies. */
  readyTime(device: number, stream: StreamName, after: readonly SimEvent[] = [], notBefore = 0): number {
    let t = Math.max(this.streamFree(device, stream), notBefore);
    for (const d of after) t = Math.max(t, d.end);
    return t;
  }

  schedule(r: ScheduleRequest): SimEvent {
    if (!(r.duration >= 0) || !Number.isFinite(r.duration)) throw new Error(`event '${r.name}' on device ${r.device}: bad duration ${r.duration}`);
    const start = this.readyTime(r.device, r.stream, r.after, r.notBefore);
    const ev: SimEvent = {
      id: this.events.length, device: r.device, stream: r.stream, name: r.name, kind: r.kind,
      start, end: start + r.duration, deps: (r.after ?? []).map((d) => d.id), args: { ...(r.args ?? {}) },
    };
    this.events.push(ev);
    this.free.set(`${r.device}/${r.stream}`, ev.end);
    return ev;
  }

  /** Time at which the last event ends. */
  get makespan(): number { return this.events.reduce((m, e) => Math.max(m, e.end), 0); }

  devices(): number[] { return [...new Set(this.events.map((e) => e.device))].sort((a, b) => a - b); }

  /** Busy/idle per (device, stream) over [0, makespan]. */
  streamSummary(): StreamSummary[] {
    const span = this.makespan, out: StreamSummary[] = [];
    for (const d of this.devices()) for (const s of STREAMS) {
      const evs = this.events.filter((e) => e.device === d && e.stream === s);
      if (evs.length === 0) continue;
      const busy = length(mergeIntervals(evs));
      out.push({ device: d, stream: s, events: evs.length, busy, idle: span - busy, utilization: span > 0 ? busy / span : 0 });
    }
    return out;
  }

  /** Exposed communication per device: comm time (intra or inter) not covered by compute on that device. */
  commSummary(): DeviceCommSummary[] {
    return this.devices().map((d) => {
      const mine = this.events.filter((e) => e.device === d);
      const compute = mergeIntervals(mine.filter((e) => e.stream === 'compute'));
      const comm = mergeIntervals(mine.filter((e) => e.stream === 'comm-intra' || e.stream === 'comm-inter'));
      const copies = mergeIntervals(mine.filter((e) => e.stream === 'host-copy' || e.stream === 'host-copy-in'));
      const commLen = length(comm), exposed = uncoveredLength(comm, compute);
      return {
        device: d, compute: length(compute), comm: commLen, exposedComm: exposed,
        overlapRatio: commLen > 0 ? 1 - exposed / commLen : 0,
        hostCopy: length(copies), exposedHostCopy: uncoveredLength(copies, compute),
        makespan: mine.reduce((m, e) => Math.max(m, e.end), 0),
      };
    });
  }

  /** arquero tables of streamSummary() and commSummary(). */
  summaryTables(): { streams: aq.ColumnTable; comm: aq.ColumnTable } {
    return { streams: aq.from(this.streamSummary()), comm: aq.from(this.commSummary()) };
  }

  /**
   * Human-readable summary (times in microseconds): per stream and per device up to `maxDevices`
   * devices, otherwise aggregated over devices (mean and max).
   */
  summaryText(maxDevices = 4): string {
    const us = (x: number) => (x * 1e6).toFixed(1);
    const pct = (x: number) => (x * 100).toFixed(1) + '%';
    const streams = this.streamSummary(), comm = this.commSummary();
    let a: aq.ColumnTable, b: aq.ColumnTable;
    if (this.devices().length <= maxDevices) {
      a = aq.from(streams.map((r) => ({ device: r.device, stream: r.stream, events: r.events, busy_us: us(r.busy), idle_us: us(r.idle), util: pct(r.utilization) })));
      b = aq.from(comm.map((r) => ({ device: r.device, compute_us: us(r.compute), comm_us: us(r.comm), exposed_comm_us: us(r.exposedComm), overlap: pct(r.overlapRatio), host_copy_us: us(r.hostCopy), exposed_host_copy_us: us(r.exposedHostCopy) })));
    } else {
      const mean = (xs: number[]) => xs.reduce((p, x) => p + x, 0) / xs.length;
      a = aq.from(STREAMS.map((s) => streams.filter((r) => r.stream === s)).filter((rs) => rs.length > 0).map((rs) => ({
        stream: rs[0].stream, devices: rs.length, events: rs.reduce((p, r) => p + r.events, 0),
        mean_busy_us: us(mean(rs.map((r) => r.busy))), max_busy_us: us(Math.max(...rs.map((r) => r.busy))), mean_util: pct(mean(rs.map((r) => r.utilization))),
      })));
      b = aq.from([{
        devices: comm.length, mean_compute_us: us(mean(comm.map((r) => r.compute))), mean_comm_us: us(mean(comm.map((r) => r.comm))),
        mean_exposed_comm_us: us(mean(comm.map((r) => r.exposedComm))), max_exposed_comm_us: us(Math.max(...comm.map((r) => r.exposedComm))),
        mean_overlap: pct(mean(comm.map((r) => r.overlapRatio))), mean_exposed_host_copy_us: us(mean(comm.map((r) => r.exposedHostCopy))),
      }]);
    }
    return `makespan ${us(this.makespan)} us\n\n${a.toMarkdown()}\n${b.toMarkdown()}`;
  }

  /**
   * Chrome / Perfetto Trace Event Format: one process per device (pid = device), one thread per stream.
   * Times are microseconds. Load the file in ui.perfetto.dev or chrome://tracing.
   */
  toChromeTrace(deviceName: (device: number) => string = (d) => `device ${d}`): { traceEvents: object[]; displayTimeUnit: string } {
    const traceEvents: object[] = [];
    for (const d of this.devices()) {
      traceEvents.push({ ph: 'M', name: 'process_name', pid: d, tid: 0, args: { name: deviceName(d) } });
      traceEvents.push({ ph: 'M', name: 'process_sort_index', pid: d, tid: 0, args: { sort_index: d } });
      STREAMS.forEach((s, i) => {
        traceEvents.push({ ph: 'M', name: 'thread_name', pid: d, tid: i, args: { name: s } });
        traceEvents.push({ ph: 'M', name: 'thread_sort_index', pid: d, tid: i, args: { sort_index: i } });
      });
    }
    for (const e of this.events) {
      traceEvents.push({
        ph: 'X', name: e.name, cat: e.kind, pid: e.device, tid: STREAMS.indexOf(e.stream),
        ts: e.start * 1e6, dur: (e.end - e.start) * 1e6, args: { ...e.args, id: e.id, deps: e.deps.join(',') },
      });
    }
    return { traceEvents, displayTimeUnit: 'ms' };
  }

  clear(): void { this.events.length = 0; this.free.clear(); }
}
