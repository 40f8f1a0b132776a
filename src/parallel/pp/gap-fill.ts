// Placement of a pipeline stage's ops on the shared timeline in overlap mode (pipe-clock.ts).
//
// Outside an F/B pair an op is appended as usual (after everything issued before it on its stream,
// never before the action's barrier). Inside a pair (pp-driver.ts: F(m') and B(m) of two different
// micro-batches issued together, the paper's adaptive pipe overlap) the ops are first RECORDED with
// their dependencies while the tensors are computed, then placed by a list scheduler: repeatedly, the
// recorded op (a compute op on one device, or one collective over its ranks, all starting together)
// whose dependencies are placed and which can start earliest goes next on its stream(s). So while
// micro-batch m's all-to-all occupies a comm stream, the other micro-batch's ready compute takes the
// compute stream: each stream runs one op at a time, every dependency (the micro-batch's own chain,
// the received messages) is respected, and only ops of different micro-batches change order.
//
// Weight-gradient ops (dW of a split backward, pipe-clock.ts; marked `args.wgrad`) are fillers: the
// critical ops (everything else) are placed first as above, then each dW goes into the earliest gap of
// its device's compute stream that starts after its inputs and is long enough (else after the pair's
// last compute op there). So a dW never delays a critical op of the pair; nothing in the pair depends
// on it.
import type { ScheduleRequest, SimEvent, StreamName, Timeline } from '../../device/timeline.ts';

interface Item { reqs: ScheduleRequest[]; evs: SimEvent[]; after: readonly SimEvent[]; done: boolean; filler: boolean }
type Mutable<T> = { -readonly [K in keyof T]: T[K] };

export class GapFiller {
  /** per device: no op starts before this (the end of everything issued by earlier actions) */
  private floors = new Map<number, number>();
  private items: Item[] | null = null;
  private resolved = new WeakSet<SimEvent>();
  /** ops placed by the pair scheduler (of which dW fillers, and those that found a gap before the pair's last compute op), pairs scheduled */
  placed = 0;
  fillers = 0;
  fillersInGaps = 0;
  pairs = 0;

  constructor(readonly timeline: Timeline) {}

  reset(): void { this.floors.clear(); this.items = null; this.placed = 0; this.fillers = 0; this.fillersInGaps = 0; this.pairs = 0; }

  get recording(): boolean { return this.items !== null; }


  place(r: ScheduleRequest): SimEvent {
    if (!this.items) return this.timeline.schedule(r);
    const ev: SimEvent = { id: -1, device: r.device, stream: r.stream, name: r.name, kind: r.kind, start: 0, end: 0, deps: [], args: { ...(r.args ?? {}) } };
    const after = r.after ?? [], last = this.items[this.items.length - 1];
    // the per-rank events of one collective share the `after` array (collectives.ts emit) and the name
    if (r.kind === 'comm' && last && last.after === after && after.length > 0 && last.reqs[0].name === r.name && !last.reqs.some((q) => q.device === r.device)) { last.reqs.push(r); last.evs.push(ev); }
    else this.items.push({ reqs: [r], evs: [ev], after, done: false, filler: r.args?.wgrad === 1 });
    return ev;
  }

  /** Start recording the ops of an F/B pair on `devices`; none starts before `notBefore` (both inputs there). */
  begin(devices: readonly number[], notBefore: number): void {
    this.items = [];
    this.floors.clear();
    for (const d of devices) this.floors.set(d, notBefore);
  }

  /** Place the recorded ops (list scheduling) and append them to the timeline. */
  end(): void {
    const items = this.items!, tl = this.timeline;
    this.items = null;
    const free = new Map<string, number>();
    const freeOf = (d: number, s: StreamName) => free.get(`${d}/${s}`) ?? Math.max(tl.streamFree(d, s), this.floors.get(d) ?? 0);
    const isPlaced = (e: SimEvent) => e.id >= 0 || this.resolved.has(e);
    const order: SimEvent[] = [];
    // busy intervals of each (device, stream) in this pair, sorted by start (for the dW fillers)
    const busy = new Map<string, { start: number; end: number }[]>();
    const occupy = (k: string, start: number, end: number) => {
      const xs = busy.get(k) ?? busy.set(k, []).get(k)!;
      let i = xs.length;
      while (i > 0 && xs[i - 1].start > start) i--;
      xs.splice(i, 0, { start, end });
    };
    const put = (it: Item, t: number) => {
      it.done = true;
      it.reqs.forEach((q, i) => {
        const e = it.evs[i] as Mutable<SimEvent>, k = `${q.device}/${q.stream}`;
        e.start = t; e.end = t + q.duration;
        free.set(k, Math.max(free.get(k) ?? 0, e.end));
        occupy(k, e.start, e.end);
        this.resolved.add(e);
        order.push(e);
      });
    };
    const critical = items.filter((it) => !it.filler), fillers = items.filter((it) => it.filler);
    for (let left = critical.length; left > 0; left--) {
      let best: Item | null = null, bestT = Infinity;
      for (const it of critical) {
        if (it.done || !it.after.every(isPlaced)) continue;
        const t = Math.max(...it.after.map((e) => e.end), ...it.reqs.map((q) => Math.max(q.notBefore ?? 0, freeOf(q.device, q.stream))));
        if (t < bestT) { best = it; bestT = t; }
      }
      if (!best) throw new Error('overlap pair scheduler: recorded ops depend on ops that were never placed');
      put(best, bestT);
    }
    // dW fillers (one op on one compute stream each, after placed inputs): the earliest gap that fits
    const lastEnd = new Map([...busy].map(([k, xs]) => [k, Math.max(...xs.map((x) => x.end))]));
    for (const it of fillers) {
      const q = it.reqs[0], k = `${q.device}/${q.stream}`;
      if (!it.after.every(isPlaced)) throw new Error(`overlap pair scheduler: ${q.name} depends on ops that were never placed`);
      let t = Math.max(...it.after.map((e) => e.end), q.notBefore ?? 0, Math.max(tl.streamFree(q.device, q.stream), this.floors.get(q.device) ?? 0));
      for (const b of busy.get(k) ?? []) {
        if (b.end <= t) continue;
        if (b.start >= t + q.duration) break;
        t = b.end;
      }
      if (t + q.duration <= (lastEnd.get(k) ?? -Infinity)) this.fillersInGaps++;
      put(it, t);
      this.fillers++;
    }
    // append in start order: each stream's free time never passes a later start, so Timeline.schedule keeps it
    order.sort((a, b) => a.start - b.start || a.end - b.end);
    for (const e of order as Mutable<SimEvent>[]) {
      const real = tl.schedule({ device: e.device, stream: e.stream, name: e.name, kind: e.kind, duration: e.end - e.start, notBefore: e.start, args: e.args });
      if (Math.abs(real.start - e.start) > 1e-12) throw new Error(`overlap pair scheduler: ${e.name} on device ${e.device} placed at ${real.start}, planned ${e.start}`);
      e.id = real.id;
      (tl.events as SimEvent[])[real.id] = e;
    }
    for (const it of items) it.evs.forEach((e) => { (e as Mutable<SimEvent>).deps = it.after.map((d) => d.id); });
    this.floors.clear();
    this.placed += order.length;
    this.pairs++;
  }
}
