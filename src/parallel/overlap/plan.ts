// Pure planner: the per-stage issue programs of one EP × PP pipelined MoE training step, with or
// without adaptive pipe overlap (Pangu Ultra MoE §6.2, MindSpeed `--moe-fb-overlap`).
//
// A program is the ordered list of ops one pipeline stage's host thread issues to its EP group's
// device streams (every EP rank of a stage runs the same program; compute durations differ per rank
// with the routing, a2a are collectives). Streams are in-order (FIFO in issue order), so the program
// order *is* the per-stream schedule; dependencies make ops wait for data.
//
// Sub-layer ops of one MoE layer (as in src/parallel/pipeline/overlap.ts):
//   F: attnF → dispF.inter → dispF.intra → mlpF → combF.intra → combF.inter   (+ sharedF after attnF)
//   B: combB.inter → combB.intra → mlpB(dX) → dispB.intra → dispB.inter → attnB(dX)
//      (+ sharedB; mlpW and attnW are the weight-grad halves, free to fill gaps)
// Modes:
//   'off' — Megatron 1F1B; each op waits for the previous one (comm blocks compute);
//   'on'  — 1F1B with the fb-overlap warm-up 2(p−r−1)+1 (see order1F1B); each steady F/B pair is interleaved at sub-layer granularity in
//           the order the pure list scheduler (planPipeOverlap 'fb') picks: Attn(F) hides Combine(B),
//           MLP(B) hides Dispatch(F), MLP(F) hides Dispatch(B), Attn(B) hides Combine(F). Warm-up and
//           cool-down use its 'self' order (shared expert / dW hide the same micro-batch's a2a).
import { planPipeOverlap } from '../pipeline/overlap.ts';
import { schedule1F1B, warmup1F1B, warmupInterleaved } from '../pipeline/schedule.ts';
import { meanLayerTimes, type LayerCost } from './costs.ts';

export type OverlapExecMode = 'off' | 'on';
export type Phase = 'warmup' | 'steady' | 'cooldown';
export type PlanStream = 'compute' | 'comm-intra' | 'comm-inter' | 'p2p';

export interface PlanOp {
  id: string;
  stage: number;
  /** F/B op name (attnF, dispF.inter, ...) or 'send' */
  name: string;
  dir: 'F' | 'B';
  mb: number;
  layer: number;
  phase: Phase;
  /** steady pair k = (F(w+k), B(k)) this op belongs to (both modes; fused only in 'on'), −1 outside the steady state */
  pair: number;
  stream: PlanStream;
  /** compute: duration per EP rank; a2a: one duration (collective); p2p: undefined (bytes given) */
  dur?: number[] | number;
  /** p2p: activation / gradient bytes and the peer stage */
  bytes?: number;
  peerStage?: number;
  /** ids this op waits for (any stage) */
  deps: string[];
  /** true for EP all-to-all ops (what 'hidden' is measured on) */
  ep: boolean;
}

export interface OverlapPlanInput {
  pp: number;
  microBatches: number;
  layersPerStage: number;
  /** costs[stage][mb][layer] */
  costs: LayerCost[][][];
  /** bytes of one micro-batch's activation (and its gradient) crossing a stage boundary, per EP rank */
  p2pBytes: number;
  mode: OverlapExecMode;
}

type Compute = { kind: 'F' | 'B'; mb: number };

/**
 * The 1F1B compute order of stage r. Megatron's warm-up is p−r−1 forwards. With fb overlap a steady
 * pass pair (F(i), B(j)) needs j's gradient when the pair starts, so the next stage must be a whole
 * pair ahead: warm-up 2(p−r−1)+1 = Megatron's interleaved warm-up with v=1, (p−r−1)·2, plus the one
 * extra forward MindSpeed schedules (the last stage pairs F(k+1) with B(k)). With p−r−1 + 1 the
 * steady period measured 2× the pair time (each pair waited for the next stage's pair of the same k).
 */
export function warmupOf(pp: number, M: number, r: number, fbOverlap: boolean): number {
  return fbOverlap ? Math.min(warmupInterleaved(pp, r, 1, M) + 1, M) : warmup1F1B(pp, r, M);
}

export function order1F1B(pp: number, M: number, r: number, fbOverlap = false): Compute[] {
  if (!fbOverlap) return schedule1F1B(pp, M, { computeOnly: true }).ranks[r].map((a) => ({ kind: a.kind as 'F' | 'B', mb: a.microBatch }));
  const w = warmupOf(pp, M, r, true), o: Compute[] = [];
  for (let m = 0; m < w; m++) o.push({ kind: 'F', mb: m });
  for (let i = 0; i < M - w; i++) o.push({ kind: 'F', mb: w + i }, { kind: 'B', mb: i });
  for (let i = M - w; i < M; i++) o.push({ kind: 'B', mb: i });
  return o;
}

const F_OPS = ['attnF', 'dispF.inter', 'dispF.intra', 'sharedF', 'mlpF', 'combF.intra', 'combF.inter'];
const B_OPS = ['combB.inter', 'combB.intra', 'mlpB', 'mlpW', 'dispB.intra', 'dispB.inter', 'sharedB', 'attnB', 'attnW'];

/** Ops of one layer of one micro-batch in one direction (deps inside the layer + `inDeps`). */
function layerOps(stage: number, dir: 'F' | 'B', mb: number, l: number, c: LayerCost, inDeps: string[], phase: Phase, pair: number): { ops: Map<string, PlanOp>; out: string[] } {
  const id = (n: string) => `s${stage}.${dir}${mb}.L${l}.${n}`;
  const ops = new Map<string, PlanOp>();
  const add = (name: string, stream: PlanStream, dur: number[] | number, deps: string[]) =>
    ops.set(name, { id: id(name), stage, name, dir, mb, layer: l, phase, pair, stream, dur, deps, ep: stream !== 'compute' });
  const per = (x: number) => c.mlpF.map(() => x);
  if (dir === 'F') {
    add('attnF', 'compute', per(c.attnF), inDeps);
    add('dispF.inter', 'comm-inter', c.dispatch.inter, [id('attnF')]);
    add('dispF.intra', 'comm-intra', c.dispatch.intra, [id('dispF.inter')]);
    add('sharedF', 'compute', per(c.sharedF), [id('attnF')]);
    add('mlpF', 'compute', c.mlpF, [id('dispF.intra')]);
    add('combF.intra', 'comm-intra', c.combine.intra, [id('mlpF')]);
    add('combF.inter', 'comm-inter', c.combine.inter, [id('combF.intra')]);
    return { ops, out: [id('combF.inter'), id('sharedF')] };
  }
  add('combB.inter', 'comm-inter', c.combine.inter, inDeps);
  add('combB.intra', 'comm-intra', c.combine.intra, [id('combB.inter')]);
  add('sharedB', 'compute', per(c.sharedB), inDeps);
  add('mlpB', 'compute', c.mlpB, [id('combB.intra')]);
  add('mlpW', 'compute', c.mlpW, [id('combB.intra')]);
  add('dispB.intra', 'comm-intra', c.dispatch.intra, [id('mlpB')]);
  add('dispB.inter', 'comm-inter', c.dispatch.inter, [id('dispB.intra')]);
  add('attnB', 'compute', per(c.attnB), [id('dispB.inter'), id('sharedB')]);
  add('attnW', 'compute', per(c.attnW), [id('dispB.inter'), id('sharedB')]);
  return { ops, out: [id('attnB')] };
}

/** All ops of one stage pass (F over layers 0..L−1 or B over L−1..0), plus its p2p send. */
function passOps(inp: OverlapPlanInput, stage: number, dir: 'F' | 'B', mb: number, phase: Phase, pair: number): Map<string, PlanOp> {
  const L = inp.layersPerStage, last = inp.pp - 1, all = new Map<string, PlanOp>();
  let deps: string[];
  if (dir === 'F') deps = stage > 0 ? [`s${stage - 1}.F${mb}.send`] : [];
  else deps = stage < last ? [`s${stage + 1}.B${mb}.send`] : [`s${stage}.F${mb}.L${L - 1}.combF.inter`, `s${stage}.F${mb}.L${L - 1}.sharedF`]; // loss
  for (let k = 0; k < L; k++) {
    const l = dir === 'F' ? k : L - 1 - k;
    const r = layerOps(stage, dir, mb, l, inp.costs[stage][mb][l], deps, phase, pair);
    for (const [n, o] of r.ops) all.set(`${dir}.L${l}.${n}`, o);
    deps = r.out;
  }
  const peer = dir === 'F' ? stage + 1 : stage - 1;
  if (peer >= 0 && peer <= last)
    all.set(`${dir}.send`, { id: `s${stage}.${dir}${mb}.send`, stage, name: 'send', dir, mb, layer: -1, phase, pair, stream: 'p2p', bytes: inp.p2pBytes, peerStage: peer, deps, ep: false });
  return all;
}

/** Issue order keys (`F.L3.attnF`, `B.L0.mlpW`, ...) from the pure list scheduler's timeline. */
function pureOrder(inp: OverlapPlanInput, stage: number, kind: 'fb' | 'selfF' | 'selfB'): string[] {
  const t = meanLayerTimes(inp.costs[stage]);
  const r = kind === 'fb' ? planPipeOverlap(t, inp.layersPerStage, 'fb') : planPipeOverlap(t, inp.layersPerStage, 'self', kind === 'selfF' ? 'F' : 'B');
  return r.timeline.map((x, i) => ({ x, i })).sort((a, b) => a.x.start - b.x.start || a.i - b.i)
    .map(({ x }) => { const [tag, layer, ...name] = x.id.split('.'); return `${tag === 'i' ? 'F' : 'B'}.${layer}.${name.join('.')}`; });
}

/** Serial order of one pass (overlap off). */
function serialOrder(L: number, dir: 'F' | 'B'): string[] {
  const out: string[] = [];
  for (let k = 0; k < L; k++) {
    const l = dir === 'F' ? k : L - 1 - k;
    for (const n of dir === 'F' ? F_OPS : B_OPS) out.push(`${dir}.L${l}.${n}`);
  }
  return out;
}

/** Append `ops` in `order`; a send goes right after its last dependency; 'off' chains every non-send op. */
function emit(prog: PlanOp[], groups: Map<string, PlanOp>[], order: string[], serial: boolean): void {
  const byKey = new Map<string, PlanOp>();
  for (const g of groups) for (const [k, o] of g) byKey.set(`${o.dir}${o.mb}|${k}`, o);
  const sends = [...byKey.values()].filter((o) => o.name === 'send');
  const done = new Set<string>();
  let prev: string | undefined = serial ? [...prog].reverse().find((o) => o.name !== 'send')?.id : undefined;
  for (const key of order) {
    const o = byKey.get(key);
    if (!o) throw new Error(`overlap plan: no op for '${key}'`);
    prog.push(serial && prev && !o.deps.includes(prev) ? { ...o, deps: [...o.deps, prev] } : o);
    done.add(o.id);
    if (serial) prev = o.id;
    for (const s of sends) if (!done.has(s.id) && s.deps.every((d) => done.has(d))) { prog.push(s); done.add(s.id); }
  }
  const left = sends.filter((s) => !done.has(s.id));
  if (left.length) throw new Error(`overlap plan: sends never ready: ${left.map((s) => s.id).join(', ')}`);
}

/** The programs of every stage: programs[stage] = ordered ops. */
export function planOverlapStep(inp: OverlapPlanInput): PlanOp[][] {
  const { pp, microBatches: M, layersPerStage: L, mode } = inp;
  if (inp.costs.length !== pp) throw new Error(`costs: expected ${pp} stages, got ${inp.costs.length}`);
  const programs: PlanOp[][] = [];
  for (let s = 0; s < pp; s++) {
    const order = order1F1B(pp, M, s, mode === 'on');
    // warm-up forwards, then (F, B) × (M − w) steady pairs, then w cool-down backwards
    const w = warmupOf(pp, M, s, mode === 'on'), steadyEnd = w + 2 * (M - w);
    const phaseOf = (i: number): Phase => (i < w ? 'warmup' : i >= steadyEnd ? 'cooldown' : 'steady');
    const prog: PlanOp[] = [];
    const keys = { fb: mode === 'on' ? pureOrder(inp, s, 'fb') : [], selfF: mode === 'on' ? pureOrder(inp, s, 'selfF') : serialOrder(L, 'F'), selfB: mode === 'on' ? pureOrder(inp, s, 'selfB') : serialOrder(L, 'B') };
    const tag = (mb: number, ks: string[]) => ks.map((k) => `${k[0]}${mb}|${k}`);
    for (let i = 0; i < order.length; i++) {
      const a = order[i], ph = phaseOf(i);
      const pairIdx = ph === 'steady' ? Math.floor((i - w) / 2) : -1; // steady pair k = (F(w+k), B(k))
      if (mode === 'on' && ph === 'steady' && a.kind === 'F') {
        const b = order[++i];
        const f = passOps(inp, s, 'F', a.mb, ph, pairIdx), g = passOps(inp, s, 'B', b.mb, ph, pairIdx);
        const mbOf = (k: string) => (k[0] === 'F' ? a.mb : b.mb);
        emit(prog, [f, g], keys.fb.map((k) => `${k[0]}${mbOf(k)}|${k}`), false);
      } else {
        emit(prog, [passOps(inp, s, a.kind, a.mb, ph, pairIdx)], tag(a.mb, a.kind === 'F' ? keys.selfF : keys.selfB), mode === 'off');
      }
    }
    programs.push(prog);
  }
  return programs;
}
