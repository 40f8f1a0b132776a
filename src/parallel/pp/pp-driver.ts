// Drives a pipeline schedule (src/parallel/pipeline/schedule.ts action lists) where pipeline rank r is
// a GROUP of devices (a stage running TP/CP/DP/EP in lockstep, pp-model.ts). The same driving rule
// as runPipeline (exec/pipeline-executor.ts): one process plays every rank; at each step the runnable
// rank whose next action can start earliest (simulated time) goes; a recv is runnable once its
// message was sent; sends run right after the compute that produced them; a deadlock throws.
//
// A message is one tensor per device of the stage: device i of stage s sends to device i of stage
// s ± 1 (same TP/CP/DP coordinates), a real copy charged with sendRecvTime on the link between the
// two devices (intra- or inter-node stream of the sender, after the producing op of that device).
import { tf } from '../../backend/tf.ts';
import type { Cluster } from '../../device/cluster.ts';
import { sendRecvTime } from '../../device/cost.ts';
import type { ScheduleRequest, SimEvent } from '../../device/timeline.ts';
import type { Partition } from '../pipeline/partition.ts';
import type { Action, Schedule } from '../pipeline/schedule.ts';
import { STEP_TAIL } from './pipe-clock.ts';
import { allDone, deadlockError, earliestReadyRank } from '../exec/driver-order.ts';

/** One message: tensors[i] for local rank i of the receiving stage, and the transfer events. */
export interface StageMsg { tensors: tf.Tensor[]; events: SimEvent[] }

/** A compute action as a sequence of steps (one per layer); returns the tensors to pass on. */
export type StageWork = Generator<void, tf.Tensor[] | null, void>;

/** What the driver needs from the stages. */
export interface StageOps {
  /** global devices of pipeline rank r (local rank i = devices[r][i]) */
  devices: number[][];
  /** simulated time at which pipeline rank r can start its next op of micro-batch m (ignoring inputs); m = STEP_TAIL
   *  (pipe-clock.ts): after every op of the step; the driver ends with it, leaving the stage clocks there */
  readyAt(r: number, m: number): number;
  /** per local rank, the last op event of micro-batch m on pipeline rank r (its send starts after it) */
  lastEvents(r: number, m: number): (SimEvent | null)[];
  /** F(m, chunk) on rank r; `input` is null on the first model chunk; returns the output (null on the last chunk) */
  forward(r: number, m: number, chunk: number, input: StageMsg | null): StageWork;
  /** B(m, chunk) on rank r; `input` is null on the last model chunk; returns the input gradient (null on the first chunk) */
  backward(r: number, m: number, chunk: number, input: StageMsg | null): StageWork;
}

/** Run one action's steps to the end. */
function finish(w: StageWork): tf.Tensor[] | null {
  for (;;) { const x = w.next(); if (x.done) return x.value; }
}

/**
 * F and B of two micro-batches issued as one pair (adaptive pipe overlap): one layer of F, then one of
 * B, alternately; their ops are placed on the timeline by gap-fill.ts's list scheduler, so each one's
 * all-to-all runs while the other computes (the tensors do not depend on this order).
 */
function finishPair(f: StageWork, b: StageWork): { f: tf.Tensor[] | null; b: tf.Tensor[] | null } {
  let fo: IteratorResult<void, tf.Tensor[] | null> | null = null, bo: IteratorResult<void, tf.Tensor[] | null> | null = null;
  while (!fo?.done || !bo?.done) {
    if (!fo?.done) fo = f.next();
    if (!bo?.done) bo = b.next();
  }
  return { f: fo.value as tf.Tensor[] | null, b: bo.value as tf.Tensor[] | null };
}

export interface ComputeSpan { rank: number; kind: 'F' | 'B'; microBatch: number; chunk: number; start: number; end: number }

export interface DriveOptions {
  /** adaptive pipe overlap: issue a rank's F(m') and the B(m) that follows it as one pair when both inputs are there */
  overlap?: boolean;
  /** how a p2p transfer is placed on the sender's stream (default Timeline.schedule; overlap: gap-fill.ts) */
  place?: (r: ScheduleRequest) => SimEvent;
  /** an F/B pair of pipeline rank r starts (both inputs there at `t`) and ends (overlap: gap-fill.ts records and places its ops) */
  beginPair?: (r: number, t: number) => void;
  endPair?: (r: number) => void;
}

export function drivePipeline(cluster: Cluster, s: Schedule, part: Partition, ops: StageOps, o: DriveOptions = {}): { spans: ComputeSpan[]; pairs: number } {
  const p = s.pp, C = p * s.vpp;
  // schedule-level W actions are not driven: each B is split into dX and dW ops by the stage clock (pipe-clock.ts)
  if (s.splitBackward) throw new Error('W actions are not driven by the PP×EP executor (each B charges its dX and dW ops itself, pipe-clock.ts): use splitBackward: false');
  const stage = (r: number, chunk: number) => chunk * p + r;
  const mailbox = new Map<string, StageMsg>();              // `${dir}/${mb}/${stage}` → message for that stage
  const inputs = ops.devices.map(() => new Map<string, StageMsg>());
  const out = ops.devices.map(() => new Map<string, tf.Tensor[]>());
  const pc = ops.devices.map(() => 0);
  const spans: ComputeSpan[] = [];
  let pairs = 0, unfuse = false;
  const tEnd = (evs: readonly SimEvent[]) => evs.reduce((t, e) => Math.max(t, e.end), 0);

  const readyTime = (r: number): number | null => {
    const a = s.ranks[r][pc[r]];
    if (!a) return null;
    if (a.kind === 'recv') {
      const msg = mailbox.get(`${a.dir}/${a.microBatch}/${stage(r, a.chunk)}`);
      return msg ? tEnd(msg.events) : null;
    }
    if (a.kind === 'send') return ops.readyAt(r, a.microBatch);
    const inp = inputs[r].get(`${a.kind === 'F' ? 'fwd' : 'bwd'}/${a.microBatch}/${a.chunk}`);
    const t = Math.max(ops.readyAt(r, a.microBatch), inp ? tEnd(inp.events) : 0);
    if (!o.overlap || a.kind !== 'F' || unfuse) return t;
    const pair = pairAt(r);
    if (pair === null) return t;                  // no B to pair with: F alone
    if (pair === 'wait') return null;             // wait for the B's gradient (unless nothing else can run)
    const bIn = inputs[r].get(`bwd/${pair.b.microBatch}/${pair.b.chunk}`) ?? mailbox.get(`bwd/${pair.b.microBatch}/${stage(r, pair.b.chunk)}`);
    return Math.max(t, ops.readyAt(r, pair.b.microBatch), bIn ? tEnd(bIn.events) : 0);
  };

  /** With overlap: the B that follows rank r's next F, if only F's sends and B's recv lie between ('wait': B's input not sent yet). */
  const pairAt = (r: number): { b: Action & { kind: 'B' }; j: number } | 'wait' | null => {
    const list = s.ranks[r], f = list[pc[r]];
    if (f?.kind !== 'F') return null;
    let j = pc[r] + 1;
    for (; list[j]?.kind === 'send' || list[j]?.kind === 'recv'; j++) {
      const x = list[j] as Action & { kind: 'send' | 'recv' };
      if (x.kind === 'send' && !(x.dir === 'fwd' && x.microBatch === f.microBatch && x.chunk === f.chunk)) return null;
      if (x.kind === 'recv' && x.dir !== 'bwd') return null;
    }
    const b = list[j];
    if (b?.kind !== 'B' || b.microBatch === f.microBatch) return null;   // B(m) after F(m) depends on it
    for (let k = pc[r] + 1; k < j; k++) { const x = list[k] as Action & { kind: 'recv' | 'send' }; if (x.kind === 'recv' && !(x.microBatch === b.microBatch && x.chunk === b.chunk)) return null; }
    const stB = stage(r, b.chunk);
    if (stB < C - 1 && !inputs[r].has(`bwd/${b.microBatch}/${b.chunk}`) && !mailbox.has(`bwd/${b.microBatch}/${stB}`)) return 'wait';
    return { b: b as Action & { kind: 'B' }, j };
  };

  const takeInput = (r: number, dir: 'fwd' | 'bwd', m: number, chunk: number): StageMsg => {
    const k = `${dir}/${m}/${chunk}`, msg = inputs[r].get(k);
    if (!msg) throw new Error(`pipeline rank ${r}: ${dir === 'fwd' ? 'F' : 'B'}(mb ${m}, chunk ${chunk}) has no input (missing recv?)`);
    inputs[r].delete(k);
    return msg;
  };

  const exec = (r: number, a: Action): void => {
    if (a.kind === 'recv') {
      const k = `${a.dir}/${a.microBatch}/${stage(r, a.chunk)}`;
      inputs[r].set(`${a.dir}/${a.microBatch}/${a.chunk}`, mailbox.get(k)!);
      mailbox.delete(k);
      return;
    }
    if (a.kind === 'send') {
      const key = `${a.dir}/${a.microBatch}/${a.chunk}`, ts = out[r].get(key)!;
      out[r].delete(key);
      const from = stage(r, a.chunk), to = a.dir === 'fwd' ? from + 1 : from - 1, last = ops.lastEvents(r, a.microBatch);
      const msg: StageMsg = { tensors: [], events: [] };
      ts.forEach((t, i) => {
        const res = p2p(cluster, ops.devices[r][i], ops.devices[a.peer][i], t, `${a.dir} mb${a.microBatch} s${from}→s${to}`, last[i], o.place);
        msg.tensors.push(res.tensor); msg.events.push(res.event);
      });
      tf.dispose(ts);
      mailbox.set(`${a.dir}/${a.microBatch}/${to}`, msg);
      return;
    }
    if (a.kind === 'W') throw new Error('W actions are not driven by the PP×EP executor');
    execCompute(r, a as Action & { kind: 'F' | 'B' });
  };

  const execCompute = (r: number, a: Action & { kind: 'F' | 'B' }): void => {
    const t0 = cluster.timeline.events.length;
    placeOutput(r, a, finish(work(r, a)));
    span(r, a, t0);
  };

  const work = (r: number, a: Action & { kind: 'F' | 'B' }): StageWork => {
    const st = stage(r, a.chunk), m = a.microBatch;
    return a.kind === 'F' ? ops.forward(r, m, a.chunk, st > 0 ? takeInput(r, 'fwd', m, a.chunk) : null)
      : ops.backward(r, m, a.chunk, st < C - 1 ? takeInput(r, 'bwd', m, a.chunk) : null);
  };

  const placeOutput = (r: number, a: Action & { kind: 'F' | 'B' }, res: tf.Tensor[] | null): void => {
    if (!res) return;
    const st = stage(r, a.chunk), m = a.microBatch, nb = part.chunks[a.kind === 'F' ? st + 1 : st - 1], dir = a.kind === 'F' ? 'fwd' : 'bwd';
    if (nb.stage !== r) out[r].set(`${dir}/${m}/${a.chunk}`, res);
    else inputs[r].set(`${dir}/${m}/${nb.virtual}`, { tensors: res, events: [] });
  };

  const span = (r: number, a: Action & { kind: 'F' | 'B' }, t0: number): void => {
    const devs = new Set(ops.devices[r]), tag = `mb${a.microBatch}`;
    const evs = cluster.timeline.events.slice(t0).filter((e) => e.stream === 'compute' && devs.has(e.device) && (!o.overlap || e.name.endsWith(tag)));
    if (evs.length) spans.push({ rank: r, kind: a.kind, microBatch: a.microBatch, chunk: a.chunk, start: Math.min(...evs.map((e) => e.start)), end: Math.max(...evs.map((e) => e.end)) });
  };

  /** Rank r's F, the sends and recv up to its paired B, and the B, issued as one pair. */
  const execPair = (r: number, pair: { b: Action & { kind: 'B' }; j: number }, start: number): void => {
    const list = s.ranks[r], f = list[pc[r]] as Action & { kind: 'F' }, between = list.slice(pc[r] + 1, pair.j);
    for (const x of between) if (x.kind === 'recv') exec(r, x);
    const t0 = cluster.timeline.events.length;
    o.beginPair?.(r, start);   // the pair starts when both inputs are there (F does not run ahead alone)
    const res = finishPair(work(r, f), work(r, pair.b));
    o.endPair?.(r);
    placeOutput(r, f, res.f); placeOutput(r, pair.b, res.b);
    span(r, f, t0); span(r, pair.b, t0);
    for (const x of between) if (x.kind === 'send') exec(r, x);
    pc[r] = pair.j + 1;
    pairs++;
  };

  try {
    for (;;) {
      const { rank: best, t: bestT } = earliestReadyRank(p, readyTime);
      if (best < 0) {
        if (allDone(pc, s.ranks)) break;
        if (o.overlap && !unfuse) { unfuse = true; continue; }   // every rank waits to pair: let an F go alone
        throw deadlockError(pc, s.ranks);
      }
      const pair = o.overlap && !unfuse ? pairAt(best) : null;
      unfuse = false;
      if (pair && pair !== 'wait') execPair(best, pair, bestT);
      else exec(best, s.ranks[best][pc[best]++]);
      while (s.ranks[best][pc[best]]?.kind === 'send') exec(best, s.ranks[best][pc[best]++]);
    }
    // leave every stage on the step's tail (pipe-clock.ts): the gradient sync that follows waits for every op, dW included
    for (let r = 0; r < p; r++) ops.readyAt(r, STEP_TAIL);
  } finally {
    for (const mp of [mailbox, ...inputs]) for (const msg of mp.values()) tf.dispose(msg.tensors);
    for (const mp of out) for (const ts of mp.values()) tf.dispose(ts);
  }
  return { spans, pairs };
}

/** isend/irecv of `t` from device `src` to `dst`: a copy arrives on `dst`, one event on the sender's link stream. */
function p2p(cluster: Cluster, src: number, dst: number, t: tf.Tensor, label: string, after: SimEvent | null, place?: (r: ScheduleRequest) => SimEvent): { tensor: tf.Tensor; event: SimEvent } {
  const intra = cluster.nodeOf(src) === cluster.nodeOf(dst);
  const link = intra ? cluster.spec.intraNode : cluster.spec.interNode;
  const bytes = cluster.device(src).bytesOf(t);
  const event = (place ?? ((r: ScheduleRequest) => cluster.timeline.schedule(r)))({
    device: src, stream: intra ? 'comm-intra' : 'comm-inter', name: `sendRecv ${label}`, kind: 'comm',
    duration: src === dst ? 0 : sendRecvTime(bytes, link), after: after ? [after] : [], args: { bytes, src, dst, group: 'pp' },
  });
  if (src !== dst) cluster.commLedger.add({ op: 'sendRecv', group: 'pp', link: intra ? 'intra' : 'inter', src, dst, bytes, label });
  return { tensor: t.clone(), event };
}
