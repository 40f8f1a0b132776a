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
import type { SimEvent } from '../../device/timeline.ts';
import type { Partition } from '../pipeline/partition.ts';
import type { Action, Schedule } from '../pipeline/schedule.ts';

/** One message: tensors[i] for local rank i of the receiving stage, and the transfer events. */
export interface StageMsg { tensors: tf.Tensor[]; events: SimEvent[] }

/** What the driver needs from the stages. */
export interface StageOps {
  /** global devices of pipeline rank r (local rank i = devices[r][i]) */
  devices: number[][];
  /** simulated time at which pipeline rank r can start its next op (ignoring inputs) */
  readyAt(r: number): number;
  /** per local rank, the last op event of pipeline rank r (a send starts after it) */
  lastEvents(r: number): (SimEvent | null)[];
  /** F(m, chunk) on rank r; `input` is null on the first model chunk; returns the output (null on the last chunk) */
  forward(r: number, m: number, chunk: number, input: StageMsg | null): tf.Tensor[] | null;
  /** B(m, chunk) on rank r; `input` is null on the last model chunk; returns the input gradient (null on the first chunk) */
  backward(r: number, m: number, chunk: number, input: StageMsg | null): tf.Tensor[] | null;
}

export interface ComputeSpan { rank: number; kind: 'F' | 'B'; microBatch: number; chunk: number; start: number; end: number }

export function drivePipeline(cluster: Cluster, s: Schedule, part: Partition, ops: StageOps): { spans: ComputeSpan[] } {
  const p = s.pp, C = p * s.vpp;
  if (s.splitBackward) throw new Error('split backward (B/W) is not executed by the PP×EP executor: use splitBackward: false');
  const stage = (r: number, chunk: number) => chunk * p + r;
  const mailbox = new Map<string, StageMsg>();              // `${dir}/${mb}/${stage}` → message for that stage
  const inputs = ops.devices.map(() => new Map<string, StageMsg>());
  const out = ops.devices.map(() => new Map<string, tf.Tensor[]>());
  const pc = ops.devices.map(() => 0);
  const spans: ComputeSpan[] = [];
  const tEnd = (evs: readonly SimEvent[]) => evs.reduce((t, e) => Math.max(t, e.end), 0);

  const readyTime = (r: number): number | null => {
    const a = s.ranks[r][pc[r]];
    if (!a) return null;
    if (a.kind === 'recv') {
      const msg = mailbox.get(`${a.dir}/${a.microBatch}/${stage(r, a.chunk)}`);
      return msg ? tEnd(msg.events) : null;
    }
    const inp = a.kind === 'send' ? null : inputs[r].get(`${a.kind === 'F' ? 'fwd' : 'bwd'}/${a.microBatch}/${a.chunk}`);
    return Math.max(ops.readyAt(r), inp ? tEnd(inp.events) : 0);
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
      const from = stage(r, a.chunk), to = a.dir === 'fwd' ? from + 1 : from - 1, last = ops.lastEvents(r);
      const msg: StageMsg = { tensors: [], events: [] };
      ts.forEach((t, i) => {
        const res = p2p(cluster, ops.devices[r][i], ops.devices[a.peer][i], t, `${a.dir} mb${a.microBatch} s${from}→s${to}`, last[i]);
        msg.tensors.push(res.tensor); msg.events.push(res.event);
      });
      tf.dispose(ts);
      mailbox.set(`${a.dir}/${a.microBatch}/${to}`, msg);
      return;
    }
    if (a.kind === 'W') throw new Error('W actions need split backward, which is not executed');
    const st = stage(r, a.chunk), m = a.microBatch, t0 = cluster.timeline.events.length;
    if (a.kind === 'F') {
      const res = ops.forward(r, m, a.chunk, st > 0 ? takeInput(r, 'fwd', m, a.chunk) : null);
      if (res) {
        const next = part.chunks[st + 1];
        if (next.stage !== r) out[r].set(`fwd/${m}/${a.chunk}`, res);
        else inputs[r].set(`fwd/${m}/${next.virtual}`, { tensors: res, events: [] });
      }
    } else {
      const res = ops.backward(r, m, a.chunk, st < C - 1 ? takeInput(r, 'bwd', m, a.chunk) : null);
      if (res) {
        const prev = part.chunks[st - 1];
        if (prev.stage !== r) out[r].set(`bwd/${m}/${a.chunk}`, res);
        else inputs[r].set(`bwd/${m}/${prev.virtual}`, { tensors: res, events: [] });
      }
    }
    const devs = new Set(ops.devices[r]);
    const evs = cluster.timeline.events.slice(t0).filter((e) => e.stream === 'compute' && devs.has(e.device));
    if (evs.length) spans.push({ rank: r, kind: a.kind, microBatch: m, chunk: a.chunk, start: Math.min(...evs.map((e) => e.start)), end: Math.max(...evs.map((e) => e.end)) });
  };

  try {
    for (;;) {
      let best = -1, bestT = Infinity;
      for (let r = 0; r < p; r++) {
        const t = readyTime(r);
        if (t !== null && t < bestT) { best = r; bestT = t; }
      }
      if (best < 0) {
        if (pc.every((i, r) => i >= s.ranks[r].length)) break;
        throw new Error(`pipeline deadlock: ${pc.map((i, r) => `rank ${r} at ${JSON.stringify(s.ranks[r][i])}`).join('; ')}`);
      }
      exec(best, s.ranks[best][pc[best]++]);
      while (s.ranks[best][pc[best]]?.kind === 'send') exec(best, s.ranks[best][pc[best]++]);
    }
  } finally {
    for (const mp of [mailbox, ...inputs]) for (const msg of mp.values()) tf.dispose(msg.tensors);
    for (const mp of out) for (const ts of mp.values()) tf.dispose(ts);
  }
  return { spans };
}

/** isend/irecv of `t` from device `src` to `dst`: a copy arrives on `dst`, one event on the sender's link stream. */
function p2p(cluster: Cluster, src: number, dst: number, t: tf.Tensor, label: string, after: SimEvent | null): { tensor: tf.Tensor; event: SimEvent } {
  const intra = cluster.nodeOf(src) === cluster.nodeOf(dst);
  const link = intra ? cluster.spec.intraNode : cluster.spec.interNode;
  const bytes = cluster.device(src).bytesOf(t);
  const event = cluster.timeline.schedule({
    device: src, stream: intra ? 'comm-intra' : 'comm-inter', name: `sendRecv ${label}`, kind: 'comm',
    duration: src === dst ? 0 : sendRecvTime(bytes, link), after: after ? [after] : [], args: { bytes, src, dst, group: 'pp' },
  });
  if (src !== dst) cluster.commLedger.add({ op: 'sendRecv', group: 'pp', link: intra ? 'intra' : 'inter', src, dst, bytes, label });
  return { tensor: t.clone(), event };
}
