// Pipeline schedules as pure per-rank action lists (GPipe, 1F1B, interleaved 1F1B).
//
// Vocabulary (Megatron `schedules.py`): p = pipeline ranks, v = virtual chunks per rank,
// M = micro-batches. Model chunk `chunk` on rank r is pipeline stage s = chunk·p + r of p·v stages.
// Every compute action names (microBatch, chunk); p2p actions name the same pair from the point of
// view of the rank that executes them: a 'send' 'fwd' ships the output of this rank's F(mb, chunk),
// a 'recv' 'fwd' receives the input of this rank's F(mb, chunk); 'bwd' likewise for gradients.
// Sends are asynchronous (isend); a recv blocks until the message is there.
//
// Split backward: with `splitBackward`, B is the input-grad half and W the weight-grad half of
// the backward (zero-bubble style). The input-grad is sent as soon as B ends, before W runs, so
// the critical path shrinks to (p−1)(F+B−W) (measured: bubble 0.375 → 0.25 at p=4, M=8, W=B/2).
// Deferring cool-down W further ('end', 'lag') measured worse with list order fixed up front.

export type ComputeKind = 'F' | 'B' | 'W';
export type P2PDir = 'fwd' | 'bwd';

export type Action =
  | { kind: ComputeKind; microBatch: number; chunk: number }
  | { kind: 'send' | 'recv'; dir: P2PDir; microBatch: number; chunk: number; peer: number };

export type ScheduleName = 'gpipe' | '1f1b' | 'interleaved';

export interface Schedule {
  name: ScheduleName;
  pp: number;
  vpp: number;
  numMicroBatches: number;
  splitBackward: boolean;
  /** ranks[r] = ordered action list of pipeline rank r. */
  ranks: Action[][];
}

export type DeferW = 'end' | 'lag' | 'none';

export interface ScheduleOptions {
  splitBackward?: boolean;
  /** Where cool-down W go with split backward (see splitW); default 'none'. */
  deferW?: DeferW;
  /** Omit send/recv actions (compute order only). */
  computeOnly?: boolean;
}

export const stageOf = (pp: number, rank: number, chunk: number): number => chunk * pp + rank;
export const rankOfStage = (pp: number, stage: number): number => stage % pp;
export const chunkOfStage = (pp: number, stage: number): number => Math.floor(stage / pp);

/** Megatron 1F1B warm-up forwards on rank r: min(p − r − 1, M). */
export const warmup1F1B = (pp: number, rank: number, M: number): number => Math.min(pp - rank - 1, M);

/** Megatron interleaved warm-up (in (mb, chunk) units): (p − r − 1)·2 + (v − 1)·group, capped at M·v. */
export function warmupInterleaved(pp: number, rank: number, vpp: number, M: number, group = pp): number {
  return Math.min((pp - rank - 1) * 2 + (vpp - 1) * group, M * vpp);
}

/**
 * Megatron `get_schedule_table`: the k-th forward of a rank is table[k] = [mb, chunk]. Micro-batches
 * go in groups of `group`; inside a group all of chunk 0, then all of chunk 1, ... The last group
 * takes whatever is left (so any M ≥ 1 works; Megatron used to require M % p == 0).
 */
export function scheduleTable(M: number, vpp: number, group: number): [number, number][] {
  const t: [number, number][] = [];
  for (let lo = 0; lo < M; lo += group) {
    const hi = Math.min(lo + group, M);
    for (let c = 0; c < vpp; c++) for (let mb = lo; mb < hi; mb++) t.push([mb, c]);
  }
  return t;
}

type Compute = { kind: ComputeKind; microBatch: number; chunk: number };

/**
 * Expand B into B+W for split backward. Before B number `deferFrom` (the cool-down) W follows its B;
 * from there on W is delayed: 'end' moves all cool-down W to the very end, 'lag' runs each W
 * after the next B (one B of slack on the critical path), 'none' keeps W right after B.
 */
function splitW(order: Compute[], split: boolean, deferFrom: number, defer: DeferW = 'none'): Compute[] {
  if (!split) return order;
  const out: Compute[] = [];
  const deferred: Compute[] = [];
  let bIndex = 0;
  for (const a of order) {
    out.push(a);
    if (a.kind !== 'B') continue;
    const w: Compute = { kind: 'W', microBatch: a.microBatch, chunk: a.chunk };
    if (bIndex++ < deferFrom || defer === 'none') { out.push(w); continue; }
    if (defer === 'lag') { out.push(...deferred.splice(0)); }
    deferred.push(w);
  }
  return out.concat(deferred);
}

/** Insert recv before / send after each compute action that has a remote producer / consumer. */
export function withP2P(pp: number, vpp: number, rank: number, order: Compute[]): Action[] {
  const S = pp * vpp;
  const out: Action[] = [];
  for (const a of order) {
    const s = stageOf(pp, rank, a.chunk);
    const m = a.microBatch, c = a.chunk;
    const remote = (t: number) => rankOfStage(pp, t) !== rank;
    if (a.kind === 'F') {
      if (s > 0 && remote(s - 1)) out.push({ kind: 'recv', dir: 'fwd', microBatch: m, chunk: c, peer: rankOfStage(pp, s - 1) });
      out.push(a);
      if (s < S - 1 && remote(s + 1)) out.push({ kind: 'send', dir: 'fwd', microBatch: m, chunk: c, peer: rankOfStage(pp, s + 1) });
    } else if (a.kind === 'B') {
      if (s < S - 1 && remote(s + 1)) out.push({ kind: 'recv', dir: 'bwd', microBatch: m, chunk: c, peer: rankOfStage(pp, s + 1) });
      out.push(a);
      if (s > 0 && remote(s - 1)) out.push({ kind: 'send', dir: 'bwd', microBatch: m, chunk: c, peer: rankOfStage(pp, s - 1) });
    } else out.push(a);
  }
  return out;
}

function build(name: ScheduleName, pp: number, vpp: number, M: number, orders: Compute[][], opts: ScheduleOptions): Schedule {
  const ranks = orders.map((o, r) => (opts.computeOnly ? o : withP2P(pp, vpp, r, o)));
  return { name, pp, vpp, numMicroBatches: M, splitBackward: !!opts.splitBackward, ranks };
}

function check(pp: number, vpp: number, M: number): void {
  for (const [k, v] of Object.entries({ pp, vpp, M }))
    if (!(Number.isInteger(v) && v >= 1)) throw new Error(`${k} must be a positive integer (got ${v})`);
}

/** GPipe: all forwards, then all backwards (same micro-batch order). Peak in-flight = M. */
export function scheduleGPipe(pp: number, M: number, opts: ScheduleOptions = {}): Schedule {
  check(pp, 1, M);
  const orders: Compute[][] = [];
  for (let r = 0; r < pp; r++) {
    const o: Compute[] = [];
    for (let m = 0; m < M; m++) o.push({ kind: 'F', microBatch: m, chunk: 0 });
    for (let m = 0; m < M; m++) o.push({ kind: 'B', microBatch: m, chunk: 0 });
    orders.push(splitW(o, !!opts.splitBackward, 0, opts.deferW));
  }
  return build('gpipe', pp, 1, M, orders, opts);
}

/** Megatron 1F1B (non-interleaved): warm-up forwards, steady F/B pairs, cool-down backwards. */
export function schedule1F1B(pp: number, M: number, opts: ScheduleOptions = {}): Schedule {
  check(pp, 1, M);
  const orders: Compute[][] = [];
  for (let r = 0; r < pp; r++) {
    const w = warmup1F1B(pp, r, M);
    const remaining = M - w;
    const o: Compute[] = [];
    for (let m = 0; m < w; m++) o.push({ kind: 'F', microBatch: m, chunk: 0 });
    for (let i = 0; i < remaining; i++) {
      o.push({ kind: 'F', microBatch: w + i, chunk: 0 });
      o.push({ kind: 'B', microBatch: i, chunk: 0 });
    }
    for (let i = remaining; i < M; i++) o.push({ kind: 'B', microBatch: i, chunk: 0 });
    orders.push(splitW(o, !!opts.splitBackward, remaining, opts.deferW));
  }
  return build('1f1b', pp, 1, M, orders, opts);
}

export interface InterleavedOptions extends ScheduleOptions {
  /** microbatch_group_size_per_vp_stage (default p). */
  group?: number;
  /** Accept M > group with M % group != 0 (validate the result!). */
  allowPartialGroups?: boolean;
  /** Megatron `overlap_moe_expert_parallel_comm`: one more warm-up forward so a forward and a
   *  backward of different micro-batches are always available to pair (fb overlap). */
  overlapMoeExpertParallelComm?: boolean;
}

/**
 * Megatron interleaved 1F1B. Rank r runs the (mb, chunk) pairs of `scheduleTable` in order for its
 * forwards; its k-th backward is table[k] with chunk mirrored (v − 1 − chunk). Warm-up count from
 * `warmupInterleaved`. Rule: M ≤ group (one partial group) or M divisible by `group` (Megatron's
 * classic requirement, M % p == 0). Other M can deadlock with this warm-up (found by the validator,
 * e.g. p=4, v=3, M=5), so they are rejected unless `allowPartialGroups` is set.
 */
export function scheduleInterleaved(pp: number, vpp: number, M: number, opts: InterleavedOptions = {}): Schedule {
  check(pp, vpp, M);
  const group = opts.group ?? pp;
  if (M > group && M % group !== 0 && !opts.allowPartialGroups)
    throw new Error(`interleaved schedule needs M (${M}) <= group (${group}) or divisible by it`);
  const table = scheduleTable(M, vpp, group);
  const total = M * vpp;
  const fwd = (k: number): Compute => ({ kind: 'F', microBatch: table[k][0], chunk: table[k][1] });
  const bwd = (k: number): Compute => ({ kind: 'B', microBatch: table[k][0], chunk: vpp - 1 - table[k][1] });
  const orders: Compute[][] = [];
  for (let r = 0; r < pp; r++) {
    const w = Math.min(warmupInterleaved(pp, r, vpp, M, group) + (opts.overlapMoeExpertParallelComm ? 1 : 0), total);
    const remaining = total - w;
    const o: Compute[] = [];
    for (let k = 0; k < w; k++) o.push(fwd(k));
    for (let k = 0; k < remaining; k++) { o.push(fwd(w + k)); o.push(bwd(k)); }
    for (let k = remaining; k < total; k++) o.push(bwd(k));
    orders.push(splitW(o, !!opts.splitBackward, remaining, opts.deferW));
  }
  return build('interleaved', pp, vpp, M, orders, opts);
}

/** Megatron `get_forward_backward_func` choice: vpp > 1 → interleaved, else 1F1B. */
export function megatronSchedule(pp: number, vpp: number, M: number, opts: InterleavedOptions = {}): Schedule {
  return vpp > 1 ? scheduleInterleaved(pp, vpp, M, opts) : schedule1F1B(pp, M, opts);
}

export const isCompute = (a: Action): a is Compute & Action => a.kind === 'F' || a.kind === 'B' || a.kind === 'W';
