// Pipeline executor: runs the per-rank action lists of a schedule (src/parallel/pipeline) for real on
// a simulated cluster. Rank r of the pipeline is device `ranks[r]`; model chunk c = v·p + r runs the
// layers the partition gave it. Activations go forward and gradients backward with `sendRecv`
// between stage devices (real tensor copies, charged on the link); every F/B/recompute/swap is an
// event on the device timeline, so the executed timeline gives the step time and the bubble.
//
// Execution order: one process plays every rank. At each step the runnable rank whose next action
// can start earliest (simulated time) goes; a recv is runnable once its message was sent; sends run
// right after the compute that produced them. A schedule that deadlocks throws. Gradients accumulate
// over micro-batches into one GradStore per rank (ctx.lossScale = 1/M), then merge (the tied
// embedding/head weight, if any, is summed across its two ranks with an all-reduce).
//
// Split backward (`schedule.splitBackward`): B computes the tensors (input and weight gradients, as
// without the split) but charges only dX: the chunk runner's ops with half the backward factor (dX of a
// linear layer has the forward's FLOPs). W charges dW: per layer (and head, MTP, embedding on the end
// chunks) the rest of the unsplit backward op's time, so B + W of a chunk take exactly the unsplit B's
// time on the device; W follows its B on the rank's compute stream and nothing waits for it. Memory is
// not shifted: the saved tensors are freed in B (a real dW keeps X and dY until W).
import { tf } from '../../backend/tf.ts';
import type { Cluster } from '../../device/cluster.ts';
import { sendRecvTime } from '../../device/cost.ts';
import type { SimEvent } from '../../device/timeline.ts';
import type { MoEGPT, LossReport } from '../../model/gpt.ts';
import { GradStore, type ForwardContext } from '../../model/module.ts';
import type { Action, Schedule } from '../pipeline/schedule.ts';
import type { Partition } from '../pipeline/partition.ts';
import type { MemoryPlan } from '../memory/policy.ts';
import { MemoryExecutor } from './memory-executor.ts';
import { SavedLedger } from './saved-ledger.ts';
import { ChunkRunner, type ChunkCosts, type MicroBatch } from './stage-runner.ts';
import { allDone, deadlockError, earliestReadyRank } from './driver-order.ts';

export interface PipelineRunOptions {
  model: MoEGPT;
  cluster: Cluster;
  schedule: Schedule;
  partition: Partition;
  microBatches: MicroBatch[];
  costs: ChunkCosts;
  /** Recompute/swap plan (global layer indices); null = keep everything. */
  plan?: MemoryPlan | null;
  recomputeFlops?: (layer: number, name: string) => number;
  /** Device of pipeline rank r (default r). */
  ranks?: number[];
  /** ctx.seed of micro-batch m (default 1 + m). */
  seedOf?: (m: number) => number;
  /** Charge the weights and gradient buffers of each rank's chunks to its HBM (default true). */
  chargeWeights?: boolean;
}

export interface PipelineRunResult {
  /** Mean over micro-batches of the per-micro-batch loss (what the single-device step reports). */
  loss: number;
  reports: LossReport[];
  grads: GradStore;
  /** Per micro-batch context (router statistics in forward order of the layers). */
  contexts: ForwardContext[];
  ledgers: SavedLedger[];
  /** Per rank: most micro-batches in flight on a chunk. */
  peakInFlight: number[];
  /** Events of each rank's compute actions, for the Gantt chart: [rank][k]. */
  computeSpans: { rank: number; kind: 'F' | 'B' | 'W'; microBatch: number; chunk: number; start: number; end: number }[];
}

type Msg = { tensor: tf.Tensor; event: SimEvent | null };

export function runPipeline(o: PipelineRunOptions): PipelineRunResult {
  const { model, cluster, schedule: s, partition: part } = o;
  const p = s.pp, v = s.vpp, M = s.numMicroBatches;
  if (part.pp !== p || part.vpp !== v) throw new Error(`partition is pp=${part.pp} vpp=${part.vpp}, schedule pp=${p} vpp=${v}`);
  if (o.microBatches.length !== M) throw new Error(`schedule has ${M} micro-batches, got ${o.microBatches.length}`);
  const ranks = o.ranks ?? Array.from({ length: p }, (_, r) => r);
  const C = p * v;
  const ledgers = ranks.map((d) => new SavedLedger(cluster.device(d)));
  const mems = ranks.map((d, r) => new MemoryExecutor(o.plan ?? null, ledgers[r], cluster.device(d), { recomputeFlops: o.recomputeFlops }));
  // runners[r][chunk]
  const bf = o.costs.backwardFactor ?? 2;
  const runCosts: ChunkCosts = s.splitBackward ? { ...o.costs, backwardFactor: bf / 2 } : o.costs;   // B charges dX only
  const runners = ranks.map((d, r) => Array.from({ length: v }, (_, c) => {
    const ch = part.chunks[c * p + r];
    return new ChunkRunner(model, ch.start, ch.end, ch.index === 0, ch.index === C - 1, cluster.device(d), mems[r], ledgers[r], runCosts, `rank${r}.chunk${c}`);
  }));
  const bEvents = new Map<string, SimEvent | null>();   // `${m}/${chunk}` → last event of B (W's inputs)
  const contexts: ForwardContext[] = o.microBatches.map((_, m) => ({
    training: true, lossScale: 1 / M, seed: o.seedOf ? o.seedOf(m) : 1 + m, routerStats: [], recordStats: true,
  }));
  const grads = ranks.map(() => new GradStore());
  const weightAllocs = o.chargeWeights === false ? [] : chargeWeights(model, cluster, ranks, part);
  const mailbox = new Map<string, Msg>();              // `${dir}/${mb}/${stage}` → message for that stage
  const inputs = ranks.map(() => new Map<string, Msg>()); // received, waiting for their compute
  const reports: LossReport[] = new Array(M);
  const spans: PipelineRunResult['computeSpans'] = [];
  const pc = ranks.map(() => 0);
  const lastCompute = ranks.map(() => null as SimEvent | null);
  const stage = (r: number, chunk: number) => chunk * p + r;
  const out = ranks.map(() => new Map<string, tf.Tensor>()); // outputs waiting for their send

  const readyTime = (r: number): number | null => {
    const a = s.ranks[r][pc[r]];
    if (!a) return null;
    const tl = cluster.timeline, dev = ranks[r];
    if (a.kind === 'recv') {
      const msg = mailbox.get(`${a.dir}/${a.microBatch}/${stage(r, a.chunk)}`);
      return msg ? (msg.event?.end ?? 0) : null;
    }
    if (a.kind === 'send') return tl.streamFree(dev, 'compute');
    const inp = inputs[r].get(`${a.kind === 'F' ? 'fwd' : 'bwd'}/${a.microBatch}/${a.chunk}`);
    return tl.readyTime(dev, 'compute', inp?.event ? [inp.event] : []);
  };

  const exec = (r: number, a: Action): void => {
    const dev = ranks[r];
    if (a.kind === 'recv') {
      const k = `${a.dir}/${a.microBatch}/${stage(r, a.chunk)}`;
      inputs[r].set(`${a.dir}/${a.microBatch}/${a.chunk}`, mailbox.get(k)!);
      mailbox.delete(k);
      return;
    }
    if (a.kind === 'send') {
      const key = `${a.dir}/${a.microBatch}/${a.chunk}`;
      const t = out[r].get(key)!;
      out[r].delete(key);
      const to = a.dir === 'fwd' ? stage(r, a.chunk) + 1 : stage(r, a.chunk) - 1;
      const res = p2p(cluster, dev, ranks[a.peer], t, `${a.dir} mb${a.microBatch} s${stage(r, a.chunk)}→s${to}`, lastCompute[r]);
      t.dispose();
      mailbox.set(`${a.dir}/${a.microBatch}/${to}`, res);
      return;
    }
    const runner = runners[r][a.chunk];
    if (a.kind === 'W') { chargeW(r, a.microBatch, a.chunk); return; }
    const st = stage(r, a.chunk);
    const m = a.microBatch;
    const t0 = cluster.timeline.events.length;
    if (a.kind === 'F') {
      // swap prefetch: the next backward on this rank reloads while this forward runs (steady state)
      const nextB = s.ranks[r].slice(pc[r]).find((x) => x.kind === 'B');
      if (nextB) runners[r][nextB.chunk].prefetchBackward(nextB.microBatch);
      let msg: Msg | null = null;
      if (st > 0) msg = takeInput(r, 'fwd', m, a.chunk, st);
      const res = runner.forward(m, o.microBatches[m], contexts[m], msg?.tensor ?? null, msg?.event ? [msg.event] : []);
      msg?.tensor.dispose();
      if (res.event) lastCompute[r] = res.event;
      if (res.output) {
        if (st < C - 1 && part.chunks[st + 1].stage !== r) out[r].set(`fwd/${m}/${a.chunk}`, res.output);
        else inputs[part.chunks[st + 1].stage].set(`fwd/${m}/${part.chunks[st + 1].virtual}`, { tensor: res.output, event: res.event });
      }
    } else {
      let msg: Msg | null = null;
      if (st < C - 1) msg = takeInput(r, 'bwd', m, a.chunk, st);
      const res = runner.backward(m, msg?.tensor ?? null, grads[r], msg?.event ? [msg.event] : []);
      msg?.tensor.dispose();
      if (res.report) reports[m] = res.report;
      if (res.event) lastCompute[r] = res.event;
      bEvents.set(`${m}/${a.chunk}`, res.event);
      if (res.dInput) {
        if (part.chunks[st - 1].stage !== r) out[r].set(`bwd/${m}/${a.chunk}`, res.dInput);
        else inputs[part.chunks[st - 1].stage].set(`bwd/${m}/${part.chunks[st - 1].virtual}`, { tensor: res.dInput, event: res.event });
      }
    }
    const evs = cluster.timeline.events.slice(t0).filter((e) => e.stream === 'compute' && e.device === dev);
    if (evs.length) spans.push({ rank: r, kind: a.kind, microBatch: m, chunk: a.chunk, start: evs[0].start, end: evs[evs.length - 1].end });
  };

  /** W(m, chunk): the dW ops of B(m, chunk) (split backward), the rest of each unsplit backward op's time. */
  const chargeW = (r: number, m: number, chunk: number): void => {
    const runner = runners[r][chunk], dev = cluster.device(ranks[r]), c = o.costs, eh = c.chargeEmbeddingHead ?? true;
    const key = `${m}/${chunk}`;
    if (!bEvents.has(key)) throw new Error(`rank ${r}: W(mb ${m}, chunk ${chunk}) before its B`);
    let deps: SimEvent[] = bEvents.get(key) ? [bEvents.get(key)!] : [];
    bEvents.delete(key);
    const t0 = cluster.timeline.events.length;
    const w = (name: string, amount: number, bytes = false) => {
      if (amount <= 0) return;
      const cost = (x: number) => dev.costOf(bytes ? { bytes: x } : { flops: x });
      deps = [dev.charge(`W mb${m} ${name}`, { seconds: cost(bf * amount) - cost((bf / 2) * amount) }, { after: deps, args: { part: 'dW' } })];
    };
    if (runner.isLast && eh) { for (let k = model.mtp.length - 1; k >= 0; k--) w(`mtp${k}`, c.mtpFlops); w('head', c.headFlops); }
    for (let l = runner.end - 1; l >= runner.start; l--) w(`L${l}`, c.layerForwardFlops(l));
    if (runner.isFirst && eh) w('embedding', c.embeddingBytes, true);
    const evs = cluster.timeline.events.slice(t0);
    if (evs.length) spans.push({ rank: r, kind: 'W', microBatch: m, chunk, start: evs[0].start, end: evs[evs.length - 1].end });
  };

  const takeInput = (r: number, dir: 'fwd' | 'bwd', m: number, chunk: number, st: number): Msg => {
    const k = `${dir}/${m}/${chunk}`;
    const msg = inputs[r].get(k);
    if (!msg) throw new Error(`rank ${r}: ${dir === 'fwd' ? 'F' : 'B'}(mb ${m}, stage ${st}) has no input (missing recv?)`);
    inputs[r].delete(k);
    return msg;
  };

  try {
    for (;;) {
      const { rank: best } = earliestReadyRank(p, readyTime);
      if (best < 0) {
        if (allDone(pc, s.ranks)) break;
        throw deadlockError(pc, s.ranks);
      }
      exec(best, s.ranks[best][pc[best]++]);
      // sends go right after the compute that produced them
      while (s.ranks[best][pc[best]]?.kind === 'send') exec(best, s.ranks[best][pc[best]++]);
    }
  } finally {
    for (const rr of runners) for (const c of rr) c.dispose();
    for (const mp of [mailbox, ...inputs]) for (const msg of mp.values()) msg.tensor.dispose();
    for (const mp of out) for (const t of mp.values()) t.dispose();
    for (const [d, a] of weightAllocs) cluster.device(d).hbm.release(a);
  }
  const merged = mergeGrads(model, cluster, ranks, grads);
  return {
    loss: reports.reduce((a, rep) => a + rep.loss, 0) / M, reports, grads: merged, contexts, ledgers,
    peakInFlight: runners.map((rr) => Math.max(...rr.map((c) => c.peakInFlight))), computeSpans: spans,
  };
}

/**
 * Point-to-point send of `t` from device `src` to `dst` (isend/irecv): a copy arrives on `dst`. The
 * transfer is one event on the sender's p2p stream after the producing compute (the receiver's
 * compute depends on it); it is not also placed on the receiver's stream, because one process plays
 * all ranks and a shared stream would serialise messages in execution order, not simulated time.
 */
function p2p(cluster: Cluster, src: number, dst: number, t: tf.Tensor, label: string, after: SimEvent | null): Msg {
  const intra = cluster.nodeOf(src) === cluster.nodeOf(dst);
  const link = intra ? cluster.spec.intraNode : cluster.spec.interNode;
  const bytes = cluster.device(src).bytesOf(t);
  const event = cluster.timeline.schedule({
    device: src, stream: intra ? 'comm-intra' : 'comm-inter', name: `sendRecv ${label}`, kind: 'comm',
    duration: src === dst ? 0 : sendRecvTime(bytes, link), after: after ? [after] : [], args: { bytes, src, dst },
  });
  if (src !== dst) cluster.commLedger.add({ op: 'sendRecv', group: 'pp', link: intra ? 'intra' : 'inter', src, dst, bytes, label });
  return { tensor: t.clone(), event };
}

/** The pipeline stages that hold parameter `name`: its layer's stage; the embedding on the first stage
 *  (and the last when tied); head, final norm and MTP on the last. */
export function paramOwners(model: MoEGPT, part: Partition, name: string): Set<number> {
  const C = part.chunks.length, owners = new Set<number>();
  const m = /^layers\.(\d+)\./.exec(name);
  if (m) owners.add(part.stageOfLayer[Number(m[1])]);
  else if (name.startsWith('embedding.')) { owners.add(part.chunks[0].stage); if (model.cfg.tieEmbeddings) owners.add(part.chunks[C - 1].stage); }
  else owners.add(part.chunks[C - 1].stage);
  return owners;
}

/** Parameters of each pipeline rank (by name prefix), charged as 'weights' and 'gradients'. */
function chargeWeights(model: MoEGPT, cluster: Cluster, ranks: number[], part: Partition) {
  const allocs: [number, ReturnType<Cluster['devices'][number]['hbm']['alloc']>][] = [];
  for (const [name, v] of model.params.vars) {
    for (const r of paramOwners(model, part, name)) {
      const dev = cluster.device(ranks[r]);
      const bytes = v.size * (dev.elementBytes ?? 4);
      allocs.push([ranks[r], dev.hbm.alloc('weights', name, bytes)]);
      allocs.push([ranks[r], dev.hbm.alloc('gradients', name, bytes)]);
    }
  }
  return allocs;
}

/** One GradStore from the per-rank ones; a weight with gradients on two ranks (tied embedding) is all-reduced. */
function mergeGrads(_model: MoEGPT, cluster: Cluster, ranks: number[], grads: GradStore[]): GradStore {
  const merged = new GradStore();
  const holders = new Map<string, number[]>();
  grads.forEach((g, r) => { for (const n of g.grads.keys()) holders.set(n, [...(holders.get(n) ?? []), r]); });
  for (const [n, rs] of holders) {
    if (rs.length === 1) { merged.grads.set(n, grads[rs[0]].get(n)!); grads[rs[0]].grads.delete(n); continue; }
    const group = cluster.group('embd', rs.map((r) => ranks[r]));
    const res = cluster.comm.allReduce(group, rs.map((r) => grads[r].get(n)!), { label: `allreduce ${n}` });
    merged.grads.set(n, res.outputs[0]); // ownership moves to the merged store
    tf.dispose(res.outputs.slice(1));
  }
  for (const g of grads) g.dispose();
  return merged;
}
