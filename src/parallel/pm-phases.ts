// The phases of one micro-batch of ParallelModel (parallel-model.ts), on every rank in lockstep:
//   embedForward → layerForward(l) … → headForward (CE) → headBackward → layerBackward(l) … → embedBackward
// Each phase takes ownership of its per-rank input tensors and returns the next ones; the saved
// activations of the micro-batch live in its MicroBatchState until its backward frees them. With
// pp = 1 ParallelModel.forwardBackward runs them back to back; a pipeline stage (pp/pp-model.ts) runs
// the ones of its layer range for whichever micro-batch its schedule says, several in flight at once.
import { tf } from '../backend/tf.ts';
import type { ModelConfig } from '../model/config.ts';
import type { MoEGPT } from '../model/gpt.ts';
import type { ForwardContext, GradStore, Module, ParamStore } from '../model/module.ts';
import type { SavedActivations } from '../model/saved.ts';
import type { StepClock } from './clock.ts';
import type { ContextParallelAttention } from './cp/ring.ts';
import type { AllGatherMoE } from './ep/allgather-moe.ts';
import type { EPMoE, EPRankLayer } from './ep/ep-moe.ts';
import type { ResolvedLayout } from './layout.ts';
import type { TPMappings } from './tp/mappings.ts';
import type { VocabParallelEmbedding, VocabParallelHead } from './tp/vocab-parallel.ts';

export interface Scales { localAuxScale: number; groupAuxScale: number }

/** What the phases need from ParallelModel. */
export interface PhaseHost {
  readonly cfg: ModelConfig;
  readonly layout: ResolvedLayout;
  readonly replicas: MoEGPT[];
  readonly params: ParamStore[];
  readonly grads: GradStore[];
  readonly clock: StepClock;
  readonly tpMaps: TPMappings;
  readonly moe: EPMoE | AllGatherMoE;
  readonly sequenceParallel: boolean;
  /** per-device recompute / swap of the layer records (pipeline stages with a plan); null: none */
  readonly memory: PhaseMemory | null;
  readonly phase: {
    attn: Module[][]; mlp: (Module | null)[][]; epLayers: Map<number, EPRankLayer[]>;
    vpEmbedding: VocabParallelEmbedding | null; vpHead: VocabParallelHead | null;
    newRecord(rank: number, owner: string): SavedActivations;
  };
}

/**
 * Selective recompute / swap of the layer records, per device (pp/stage-memory.ts): called around each
 * layer's forward and backward with the layer's per-rank records. Absent: records stay resident.
 */
export interface PhaseMemory {
  /** `h`: the layer's per-rank input (full recompute keeps it) */
  beforeForward(st: MicroBatchState, l: number, recs: SavedActivations[], h: readonly tf.Tensor[]): void;
  afterForward(st: MicroBatchState, l: number, recs: SavedActivations[]): void;
  /** before layer l's records are read by its backward: full recompute replays l's group here (st.layers) */
  replay?(st: MicroBatchState, l: number): void;
  /** before the layer's backward reads its records: reloads, the recompute charge, prefetch of the next layers */
  beforeBackward(st: MicroBatchState, l: number, recs: SavedActivations[]): void;
  /** after the layer's records were disposed */
  afterBackward(st: MicroBatchState, l: number, recs: SavedActivations[]): void;
}

/** One micro-batch in flight on every rank of a ParallelModel. */
export interface MicroBatchState {
  /** record owner prefix ('' with pp = 1, `mb${m}.` in a pipeline) */
  prefix: string;
  b: number; S: number; T: number;
  ctxs: ForwardContext[]; scales: Scales; cpAttn: ContextParallelAttention | null;
  emb: SavedActivations[] | null; heads: SavedActivations[] | null;
  layers: Map<number, SavedActivations[]>;
  /** full recompute: per group start layer, the per-rank records keeping the group's input */
  kept: Map<number, SavedActivations[]>;
}

export function newMicroBatch(prefix: string, b: number, S: number, ctxs: ForwardContext[], scales: Scales, cpAttn: ContextParallelAttention | null): MicroBatchState {
  return { prefix, b, S, T: b * S, ctxs, scales, cpAttn, emb: null, heads: null, layers: new Map(), kept: new Map() };
}

export function disposeMicroBatch(st: MicroBatchState): void {
  for (const rec of [...(st.emb ?? []), ...(st.heads ?? []), ...[...st.layers.values()].flat(), ...[...st.kept.values()].flat()]) rec.dispose();
  st.layers.clear();
  st.kept.clear();
}

const ranksOf = (pm: PhaseHost) => [...Array(pm.layout.world).keys()];
const tidyAll = (pm: PhaseHost, f: (r: number) => tf.Tensor) => ranksOf(pm).map((r) => tf.tidy(() => f(r)));
/** The residual stream's shape: [T/tp, H] under sequence parallelism, else [b, S, H]. */
function res(pm: PhaseHost, st: MicroBatchState, x: tf.Tensor): tf.Tensor {
  const H = pm.cfg.hiddenSize;
  return pm.sequenceParallel ? tf.reshape(x, [st.T / pm.layout.tp, H]) : tf.reshape(x, [st.b, st.S, H]);
}
function records(pm: PhaseHost, st: MicroBatchState, owner: string): SavedActivations[] {
  return ranksOf(pm).map((r) => pm.phase.newRecord(r, `${st.prefix}${owner}`));
}

/** Embedding forward: h[r] (the residual stream) from each rank's tokens. */
export function embedForward(pm: PhaseHost, st: MicroBatchState, tok: (r: number) => Int32Array): tf.Tensor[] {
  const emb = (st.emb = records(pm, st, 'embedding')), ranks = ranksOf(pm);
  if (pm.phase.vpEmbedding) return pm.phase.vpEmbedding.forward(ranks.map(tok), emb, pm.sequenceParallel).map((x) => { const y = res(pm, st, x); x.dispose(); return y; });
  return ranks.map((r) => pm.replicas[r].embed(tok(r), st.b, st.S, emb[r]));                               // [b, S, H]
}

/** Forward of block l (attention + MoE or dense MLP); disposes h. */
export function layerForward(pm: PhaseHost, st: MicroBatchState, l: number, h: tf.Tensor[]): tf.Tensor[] {
  const ranks = ranksOf(pm), { T, ctxs, cpAttn } = st, H = pm.cfg.hiddenSize, tp = pm.tpMaps, sp = pm.sequenceParallel;
  const { attn, mlp, epLayers } = pm.phase;
  const bsh = (x: tf.Tensor) => tf.reshape(x, [st.b, st.S, H]);
  const blocks = ranks.map((r) => pm.replicas[r].blocks[l]), recs = records(pm, st, `layers.${l}`);
  st.layers.set(l, recs);
  pm.memory?.beforeForward(st, l, recs, h);
  // attention: norm → f → local heads → g (all-reduce of partial outputs)
  let aPart: tf.Tensor[];
  if (cpAttn) {
    const normed = tidyAll(pm, (r) => blocks[r].attnNorm.forward(h[r], recs[r], ctxs[r]));
    aPart = cpAttn.forward(`layers.${l}.attn`, pm.params, normed, recs, ctxs, ranks.map((r) => attn[r][l]));
    tf.dispose(normed);
  } else if (sp) {
    const nS = tidyAll(pm, (r) => blocks[r].attnNorm.forward(h[r], recs[r], ctxs[r]));                     // [T/tp, H]
    const nF = tp.gatherToTP(nS, `L${l}.attn`);                                                            // [T, H]
    aPart = tidyAll(pm, (r) => tf.reshape(attn[r][l].forward(bsh(nF[r]), recs[r], ctxs[r]), [T, H]));
    tf.dispose([...nS, ...nF]);
  } else aPart = tidyAll(pm, (r) => attn[r][l].forward(blocks[r].attnNorm.forward(h[r], recs[r], ctxs[r]), recs[r], ctxs[r]));
  if (!cpAttn) ranks.forEach((r) => pm.clock.compute(r, `L${l} attn fwd`, { flops: 2 * T * attnParams(pm.params[r], l) }));
  const a = sp ? tp.reduceScatterToSP(aPart, `L${l}.attn`) : tp.reduceFromTP(aPart, `L${l}.attn`);
  const pre = ranks.map((r) => tf.tidy(() => {
    const a2 = blocks[r].attnPostNorm ? blocks[r].attnPostNorm!.forward(a[r], recs[r], ctxs[r]) : a[r];
    const h1 = tf.add(h[r], a2);
    return { h1, n: blocks[r].mlpNorm.forward(h1, recs[r], ctxs[r]) };
  }));
  tf.dispose([...h, ...aPart, ...a]);
  let m: tf.Tensor[];
  if (blocks[0].moe && sp) m = pm.moe.forward(epLayers.get(l)!, pre.map((p) => p.n), recs, ctxs, st.scales);   // already [T/tp, H]
  else if (blocks[0].moe) {
    // sequence-parallel region: each TP rank routes its slice of the tokens
    const n2 = pre.map((p) => tf.reshape(p.n, [T, H]));
    const nSP = tp.scatterToSP(n2);
    tf.dispose(n2);
    const y = pm.moe.forward(epLayers.get(l)!, nSP, recs, ctxs, st.scales);                                // [T/tp, H]
    m = tp.gatherFromSP(y, `L${l}.moe`);
    tf.dispose([...nSP, ...y]);
  } else {
    const nF = sp ? tp.gatherToTP(pre.map((p) => p.n), `L${l}.mlp`) : null;
    const part = tidyAll(pm, (r) => mlp[r][l]!.forward(tf.reshape(nF ? nF[r] : pre[r].n, [T, H]), recs[r], ctxs[r]));
    if (nF) tf.dispose(nF);
    ranks.forEach((r) => pm.clock.compute(r, `L${l} mlp fwd`, { flops: 2 * T * mlpParams(pm.params[r], l) }));
    m = sp ? tp.reduceScatterToSP(part, `L${l}.mlp`) : tp.reduceFromTP(part, `L${l}.mlp`);
    tf.dispose(part);
  }
  const out = tidyAll(pm, (r) => {
    let y = res(pm, st, m[r]);
    if (blocks[r].mlpPostNorm) y = blocks[r].mlpPostNorm!.forward(y, recs[r], ctxs[r]);
    return tf.add(pre[r].h1, y);
  });
  tf.dispose([...pre.flatMap((p) => [p.h1, p.n]), ...m]);
  pm.memory?.afterForward(st, l, recs);
  return out;
}

/** Final norm + head + CE (forward only; the backward is headBackward); disposes h. Returns each rank's CE. */
export function headForward(pm: PhaseHost, st: MicroBatchState, h: tf.Tensor[], tgt: (r: number) => Int32Array): number[] {
  const ranks = ranksOf(pm), heads = (st.heads = records(pm, st, 'head')), sp = pm.sequenceParallel, H = pm.cfg.hiddenSize;
  let ce: number[];
  if (pm.phase.vpHead) {
    const Ts = sp ? st.T / pm.layout.tp : st.T;
    const xN = tidyAll(pm, (r) => tf.reshape(pm.replicas[r].head.norm.forward(h[r], heads[r]), [Ts, H]));
    const x = sp ? pm.tpMaps.gatherToTP(xN, 'head') : xN;
    ce = pm.phase.vpHead.forward(x, ranks.map(tgt), heads);
    tf.dispose(x);
    if (sp) tf.dispose(xN);
  } else ce = ranks.map((r) => { const t = tf.tidy(() => pm.replicas[r].head.loss(h[r], tgt(r), heads[r])); const v = t.dataSync()[0]; t.dispose(); return v; });
  ranks.forEach((r) => pm.clock.compute(r, 'head fwd', { gemm: [st.T, pm.cfg.vocabSize / pm.layout.tp, H] }));
  tf.dispose(h);
  return ce;
}

/** Backward of the head (loss scale ctx.lossScale): the gradient of the residual stream. */
export function headBackward(pm: PhaseHost, st: MicroBatchState): tf.Tensor[] {
  const ranks = ranksOf(pm), heads = st.heads!, H = pm.cfg.hiddenSize;
  let d: tf.Tensor[];
  if (pm.phase.vpHead) {
    const dx = pm.phase.vpHead.backward(st.ctxs.map((c) => c.lossScale), heads, pm.grads, pm.sequenceParallel);
    d = tidyAll(pm, (r) => pm.replicas[r].head.norm.backward(res(pm, st, dx[r]), heads[r], pm.grads[r]));
    tf.dispose(dx);
  } else d = tidyAll(pm, (r) => pm.replicas[r].head.backward(st.ctxs[r].lossScale, heads[r], pm.grads[r], [st.b, st.S, H]));
  ranks.forEach((r) => pm.clock.compute(r, 'head bwd', { gemm: [st.T, 2 * pm.cfg.vocabSize / pm.layout.tp, H] }));
  return d;
}

/** Backward of block l; disposes d and the block's records. */
export function layerBackward(pm: PhaseHost, st: MicroBatchState, l: number, d: tf.Tensor[]): tf.Tensor[] {
  const ranks = ranksOf(pm), { T, ctxs, cpAttn } = st, H = pm.cfg.hiddenSize, tp = pm.tpMaps, sp = pm.sequenceParallel, g = pm.grads;
  const { attn, mlp, epLayers } = pm.phase;
  const bsh = (x: tf.Tensor) => tf.reshape(x, [st.b, st.S, H]);
  pm.memory?.replay?.(st, l);
  const blocks = ranks.map((r) => pm.replicas[r].blocks[l]), recs = st.layers.get(l)!;
  pm.memory?.beforeBackward(st, l, recs);
  const dm = tidyAll(pm, (r) => (blocks[r].mlpPostNorm ? blocks[r].mlpPostNorm!.backward(d[r], recs[r], g[r], ctxs[r]) : tf.clone(d[r])));
  let dn: tf.Tensor[];
  if (blocks[0].moe && sp) dn = pm.moe.backward(epLayers.get(l)!, dm, recs, g, st.scales);
  else if (blocks[0].moe) {
    const dm2 = dm.map((x) => tf.reshape(x, [T, H]));
    const dSP = tp.gatherFromSPBackward(dm2);
    tf.dispose(dm2);
    const dx = pm.moe.backward(epLayers.get(l)!, dSP, recs, g, st.scales);
    dn = tp.scatterToSPBackward(dx, `L${l}.moe`);
    tf.dispose([...dSP, ...dx]);
  } else {
    const dmF = sp ? tp.reduceScatterToSPBackward(dm, `L${l}.mlp`) : null;
    const part = tidyAll(pm, (r) => mlp[r][l]!.backward(tf.reshape(dmF ? dmF[r] : dm[r], [T, H]), recs[r], g[r], ctxs[r]));
    if (dmF) tf.dispose(dmF);
    ranks.forEach((r) => pm.clock.backward(r, `L${l} mlp bwd`, { flops: 4 * T * mlpParams(pm.params[r], l) }));
    dn = sp ? tp.gatherToTPBackward(part, `L${l}.mlp`) : tp.copyToTPBackward(part, `L${l}.mlp`);
    tf.dispose(part);
  }
  const dh1 = tidyAll(pm, (r) => tf.add(d[r], blocks[r].mlpNorm.backward(res(pm, st, dn[r]), recs[r], g[r], ctxs[r])));
  let daPart: tf.Tensor[];
  if (cpAttn) {
    const daIn = tidyAll(pm, (r) => (blocks[r].attnPostNorm ? blocks[r].attnPostNorm!.backward(dh1[r], recs[r], g[r], ctxs[r]) : tf.clone(dh1[r])));
    daPart = cpAttn.backward(`layers.${l}.attn`, pm.params, daIn, recs, g, ctxs, ranks.map((r) => attn[r][l]));
    tf.dispose(daIn);
  } else if (sp) {
    const daS = tidyAll(pm, (r) => (blocks[r].attnPostNorm ? blocks[r].attnPostNorm!.backward(dh1[r], recs[r], g[r], ctxs[r]) : tf.clone(dh1[r])));
    const daF = tp.reduceScatterToSPBackward(daS, `L${l}.attn`);                                              // [T, H]
    daPart = tidyAll(pm, (r) => tf.reshape(attn[r][l].backward(bsh(daF[r]), recs[r], g[r], ctxs[r]), [T, H]));
    tf.dispose([...daS, ...daF]);
  } else daPart = tidyAll(pm, (r) => {
    const da = blocks[r].attnPostNorm ? blocks[r].attnPostNorm!.backward(dh1[r], recs[r], g[r], ctxs[r]) : dh1[r];
    return attn[r][l].backward(da, recs[r], g[r], ctxs[r]);
  });
  if (!cpAttn) ranks.forEach((r) => pm.clock.backward(r, `L${l} attn bwd`, { flops: 4 * T * attnParams(pm.params[r], l) }));
  const da = sp ? tp.gatherToTPBackward(daPart, `L${l}.attn`) : tp.copyToTPBackward(daPart, `L${l}.attn`);
  const dPrev = tidyAll(pm, (r) => tf.add(dh1[r], blocks[r].attnNorm.backward(da[r], recs[r], g[r], ctxs[r])));
  ranks.forEach((r) => recs[r].dispose());
  pm.memory?.afterBackward(st, l, recs);
  st.layers.delete(l);
  tf.dispose([...d, ...dm, ...dn, ...dh1, ...daPart, ...da]);
  return dPrev;
}

/** Embedding backward (gradients into pm.grads); disposes d. */
export function embedBackward(pm: PhaseHost, st: MicroBatchState, d: tf.Tensor[]): void {
  const emb = st.emb!, H = pm.cfg.hiddenSize;
  if (pm.phase.vpEmbedding) pm.phase.vpEmbedding.backward(d, emb, pm.grads, pm.sequenceParallel);
  else ranksOf(pm).forEach((r) => tf.tidy(() => { pm.replicas[r].embedding.backward(tf.reshape(d[r], [st.T, H]), emb[r], pm.grads[r], st.ctxs[r]).dispose(); }));
  tf.dispose(d);
}

/** Attention parameters of layer l on this rank (for the coarse compute charge). */
function attnParams(params: ParamStore, l: number): number {
  let n = 0;
  for (const [name, v] of params.vars) if (name.startsWith(`layers.${l}.attn.`)) n += v.size;
  return n;
}
function mlpParams(params: ParamStore, l: number): number {
  return params.get(`layers.${l}.mlp.fc1`).size + params.get(`layers.${l}.mlp.fc2`).size;
}
