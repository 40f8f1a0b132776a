// Adaptive pipe overlap (Pangu Ultra MoE §6.2, MindSpeed `--moe-fb-overlap`): a pure model of how
// much expert-parallel all-to-all is hidden behind compute.
//
// One MoE layer, one micro-batch:
//   forward  = attnF → dispatch(F) → mlpF → combine(F)      (+ shared expert, off the dispatch path)
//   backward = combine(B) → mlpB(dX) → dispatch(B) → attnB(dX) (+ mlpW, attnW: weight grads, any time
//              after their output-grad is known — the dX/dW split gives the scheduler filler work)
// Hierarchical EP a2a (§6.1): dispatch = inter-node all-gather then intra-node a2a; combine =
// intra-node a2a then inter-node reduce-scatter; the backward of each runs the other direction.
// Intra-node (HCCS) and inter-node (RoCE) transfers use independent links, so they overlap too.
//
// Modes (resources: 'compute', 'intra', 'inter'; a greedy list scheduler, non-preemptive):
//   'none'  — no overlap: every op on one stream, step = Σ compute + Σ comm;
//   'self'  — warm-up/cool-down: one micro-batch alone; comm runs on its own links and only the same
//             micro-batch's independent work (shared expert in forward, weight grads in backward) hides it;
//   'fb'    — 1F1B steady state: forward of micro-batch i through the stage's layers interleaved with
//             backward of micro-batch j; Attn(F) hides Combine(B), MLP(B) hides Dispatch(F),
//             MLP(F) hides Dispatch(B), Attn(B) hides Combine(F) (priorities encode this pairing).

export interface A2ATimes { intra: number; inter: number }

export interface MoELayerTimes {
  attnF: number; attnB: number; attnW: number;
  mlpF: number; mlpB: number; mlpW: number;   // routed experts (grouped GEMM)
  sharedF: number; sharedB: number;           // shared expert (fwd, full bwd)
  dispatch: A2ATimes;                          // forward dispatch; its backward has the same volume
  combine: A2ATimes;
}

export type OverlapMode = 'none' | 'self' | 'fb';
type Res = 'compute' | 'intra' | 'inter';

interface Op { id: string; res: Res; dur: number; deps: string[]; prio: number; comm: boolean }
export interface TimedOp { id: string; res: Res; start: number; end: number }

export interface OverlapResult {
  mode: OverlapMode;
  layers: number;
  /** Makespan of the modelled window. */
  time: number;
  /** Per layer (forward-only in 'self' fwd, backward-only in 'self' bwd, one F+B pair in 'fb'/'none'). */
  timePerLayer: number;
  computeTime: number;
  /** Σ of all a2a durations (intra + inter, as if serial). */
  commTime: number;
  /** time − compute time: communication the compute stream waited for. */
  exposedComm: number;
  /** 1 − exposed / comm. */
  hiddenFraction: number;
  timeline: TimedOp[];
}

/** Forward or backward ops of layer l for micro-batch tag `mb`; `prio` is the local order in the layer. */
function layerOps(t: MoELayerTimes, l: number, mb: string, dir: 'F' | 'B', prevOut: string[]): { ops: Op[]; out: string[] } {
  const id = (s: string) => `${mb}.L${l}.${s}`;
  const ops: Op[] = [];
  const add = (s: string, res: Res, dur: number, deps: string[], p: number) =>
    ops.push({ id: id(s), res, dur, deps, prio: p, comm: res !== 'compute' });
  if (dir === 'F') {
    add('attnF', 'compute', t.attnF, prevOut, 0);
    add('dispF.inter', 'inter', t.dispatch.inter, [id('attnF')], 1);
    add('dispF.intra', 'intra', t.dispatch.intra, [id('dispF.inter')], 2);
    add('sharedF', 'compute', t.sharedF, [id('attnF')], 6);
    add('mlpF', 'compute', t.mlpF, [id('dispF.intra')], 3);
    add('combF.intra', 'intra', t.combine.intra, [id('mlpF')], 4);
    add('combF.inter', 'inter', t.combine.inter, [id('combF.intra')], 5);
    return { ops, out: [id('combF.inter'), id('sharedF')] };
  }
  add('combB.inter', 'inter', t.combine.inter, prevOut, 0);
  add('combB.intra', 'intra', t.combine.intra, [id('combB.inter')], 1);
  add('sharedB', 'compute', t.sharedB, prevOut, 6);
  add('mlpB', 'compute', t.mlpB, [id('combB.intra')], 2);
  add('mlpW', 'compute', t.mlpW, [id('combB.intra')], 8);
  add('dispB.intra', 'intra', t.dispatch.intra, [id('mlpB')], 3);
  add('dispB.inter', 'inter', t.dispatch.inter, [id('dispB.intra')], 4);
  add('attnB', 'compute', t.attnB, [id('dispB.inter'), id('sharedB')], 5);
  add('attnW', 'compute', t.attnW, [id('dispB.inter'), id('sharedB')], 9);
  return { ops, out: [id('attnB')] };
}

/** Greedy non-delay list scheduling: repeatedly start the op with the earliest feasible start (ties: prio). */
function listSchedule(ops: Op[], serial: boolean): TimedOp[] {
  const byId = new Map(ops.map((o) => [o.id, o]));
  const end = new Map<string, number>();
  const free: Record<Res, number> = { compute: 0, intra: 0, inter: 0 };
  const out: TimedOp[] = [];
  const left = new Set(ops.map((o) => o.id));
  while (left.size) {
    let best: { o: Op; start: number } | null = null;
    for (const idd of left) {
      const o = byId.get(idd)!;
      if (!o.deps.every((d) => end.has(d) || !byId.has(d))) continue;
      const res: Res = serial ? 'compute' : o.res;
      const start = Math.max(free[res], ...o.deps.map((d) => end.get(d) ?? 0));
      if (!best || start < best.start - 1e-15 || (Math.abs(start - best.start) <= 1e-15 && o.prio < best.o.prio)) best = { o, start };
    }
    if (!best) throw new Error('overlap model: dependency cycle');
    const res: Res = serial ? 'compute' : best.o.res;
    const e = best.start + best.o.dur;
    free[res] = e;
    end.set(best.o.id, e);
    out.push({ id: best.o.id, res: best.o.res, start: best.start, end: e });
    left.delete(best.o.id);
  }
  return out;
}

/**
 * Model `layers` consecutive MoE layers of one pipeline stage.
 * 'fb'/'none': forward of micro-batch "i" over layers 0..L−1 paired with backward of "j" over
 * L−1..0 (pair k = F of layer k with B of layer L−1−k). 'self': forward-only ('selfDir' F) or
 * backward-only ('B') of one micro-batch.
 */
export function planPipeOverlap(t: MoELayerTimes, layers: number, mode: OverlapMode, selfDir: 'F' | 'B' = 'F'): OverlapResult {
  const ops: Op[] = [];
  const withF = mode !== 'self' || selfDir === 'F';
  const withB = mode !== 'self' || selfDir === 'B';
  let fOut: string[] = [], bOut: string[] = [];
  for (let k = 0; k < layers; k++) {
    // Pair k interleaves (by priority) the forward of layer k with the backward of layer L−1−k:
    // F ops get even slots, B ops odd ones, so Attn(F) comes before MLP(B), MLP(F) before Attn(B).
    const pairPrio = (o: Op, odd: number): Op => ({ ...o, prio: k * 100 + 2 * o.prio + odd });
    if (withF) { const r = layerOps(t, k, 'i', 'F', fOut); ops.push(...r.ops.map((o) => pairPrio(o, 0))); fOut = r.out; }
    if (withB) { const r = layerOps(t, layers - 1 - k, 'j', 'B', bOut); ops.push(...r.ops.map((o) => pairPrio(o, 1))); bOut = r.out; }
  }
  const timeline = listSchedule(ops, mode === 'none');
  const time = Math.max(...timeline.map((x) => x.end));
  const computeTime = ops.filter((o) => !o.comm).reduce((a, o) => a + o.dur, 0);
  const commTime = ops.filter((o) => o.comm).reduce((a, o) => a + o.dur, 0);
  const exposedComm = Math.max(0, time - computeTime);
  return {
    mode, layers, time, timePerLayer: time / layers, computeTime, commTime, exposedComm,
    hiddenFraction: commTime > 0 ? Math.min(1, Math.max(0, 1 - exposedComm / commTime)) : 1, timeline,
  };
}

export interface MoELayerShape {
  /** Tokens of one micro-batch on one EP rank (after SP split). */
  tokens: number;
  hidden: number;
  topk: number;
  expertFfn: number;
  sharedFfn: number;
  /** Attention forward FLOPs per token on this rank (projections + core, TP-split). */
  attnFlopsPerToken: number;
  bytesPerElement: number;
}

export interface EPNetwork {
  epSize: number;
  /** EP ranks per node (the intra-node a2a group); epSize / ranksPerNode nodes. */
  ranksPerNode: number;
  /** Effective (bus) bandwidths, bytes/s, and latencies, s. */
  intraBw: number; interBw: number;
  intraLatency?: number; interLatency?: number;
  /** Effective compute throughput, FLOP/s. */
  flops: number;
}

/**
 * Durations from shapes (SwiGLU experts: 6·h·f FLOPs per token-expert forward; backward = 2× forward
 * split evenly into dX and dW). Hierarchical a2a bytes per rank: inter-node all-gather of the rank's
 * tokens to the N−1 other nodes, (N−1)·T·h·β; intra-node a2a of the T·k token copies this node
 * serves, (g−1)/g of them off-rank: T·k·h·β·(g−1)/g.
 */
export function moeLayerTimes(s: MoELayerShape, n: EPNetwork): MoELayerTimes {
  const N = n.epSize / n.ranksPerNode, g = n.ranksPerNode;
  const tokB = s.tokens * s.hidden * s.bytesPerElement;
  const inter = N > 1 ? (N - 1) * (n.interLatency ?? 0) + ((N - 1) * tokB) / n.interBw : 0;
  const intra = g > 1 ? (g - 1) * (n.intraLatency ?? 0) + (s.topk * tokB * (g - 1)) / g / n.intraBw : 0;
  const attnF = (s.tokens * s.attnFlopsPerToken) / n.flops;
  const mlpF = (s.tokens * s.topk * 6 * s.hidden * s.expertFfn) / n.flops;
  const sharedF = (s.tokens * 6 * s.hidden * s.sharedFfn) / n.flops;
  return {
    attnF, attnB: attnF, attnW: attnF,
    mlpF, mlpB: mlpF, mlpW: mlpF,
    sharedF, sharedB: 2 * sharedF,
    dispatch: { intra, inter }, combine: { intra, inter },
  };
}

/** The three modes side by side. */
export function compareOverlap(t: MoELayerTimes, layers: number) {
  const none = planPipeOverlap(t, layers, 'none');
  const fb = planPipeOverlap(t, layers, 'fb');
  const selfF = planPipeOverlap(t, layers, 'self', 'F');
  const selfB = planPipeOverlap(t, layers, 'self', 'B');
  return { none, fb, selfF, selfB, speedup: none.time / fb.time };
}

export interface StepOverlap {
  rank: number;
  /** Micro-batch passes per phase: warm-up forwards, steady F+B pairs, cool-down backwards. */
  warmup: number; steady: number; cooldown: number;
  time: { none: number; overlapped: number };
  commTime: number;
  hiddenFraction: number;
}

/**
 * Whole-step view for 1F1B rank r: warm-up forwards and cool-down backwards can only self-overlap,
 * the steady F/B pairs get the cross-micro-batch overlap. EP a2a time only (PP p2p not included).
 */
export function stepOverlap(t: MoELayerTimes, layersPerStage: number, pp: number, M: number, rank: number): StepOverlap {
  const w = Math.min(pp - rank - 1, M);
  const steady = M - w;
  const c = compareOverlap(t, layersPerStage);
  const none = M * c.none.time;
  const overlapped = w * c.selfF.time + steady * c.fb.time + w * c.selfB.time;
  const commTime = M * c.none.commTime;
  const compute = M * c.none.computeTime;
  return {
    rank, warmup: w, steady, cooldown: w, time: { none, overlapped }, commTime,
    hiddenFraction: 1 - Math.max(0, overlapped - compute) / commTime,
  };
}
