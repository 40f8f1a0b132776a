// Analytical versus executed step time (docs/simulator-executed.md).
//
// `compareExecuted(c)` runs one training step (forward, backward, gradient all-reduce) of a small MoE model
// on the simulated cluster (src/parallel ParallelModel: real tensors, every op and collective charged on the
// timeline with src/device/cost.ts) and evaluates the analytical `simulate()` for the same model, layout,
// device and options. Both sides price ops with the same cost.ts functions; the comparison checks how they
// compose them (sequencing, exposed communication, routing imbalance, latency terms).
//
// Executed side: the executors report one compute charge per module call; `executorOpRefiner` (installed as
// `pm.clock.refine`, src/parallel/clock.ts) splits each into the kernels the replica runs, with the actual
// shapes of this step: fused QKV and output projection GEMMs, core attention FLOPs, the norm / residual HBM
// pass, expert fc1 / fc2 on the rows each rank actually received, head GEMM + softmax pass; in the backward
// every forward kernel twice (dgrad and wgrad). Each kernel pays the device's launch overhead.
//
// Analytical side: `simulate()` with the options the executor implies: no recompute, no overlap of any
// kind (the lockstep executor serialises every rank's ops), gradients all-reduced (no distributed
// optimizer) in one collective per parameter tensor (`dpBuckets`), the dispatcher's metadata collectives
// (`epMetadata`), per-kernel launches of the refined kernels (`fixedCosts: 'executor'`), the neutral calibration (the executor uses the
// catalogue efficiencies), and the routing imbalance ρ measured on the executed step. The analytical
// optimizer step is left out (forwardBackward does not step the optimizer).
import { initBackend } from '../backend/tf.ts';
import { Cluster } from '../device/cluster.ts';
import type { OpCost } from '../device/device.ts';
import { getSpec } from '../device/specs.ts';
import { layerFlops } from '../model/flops.ts';
import { resolveConfig, type ModelConfig } from '../model/config.ts';
import type { RefinedOp } from '../parallel/clock.ts';
import type { DispatcherKind } from '../parallel/ep/ep-moe.ts';
import { ParallelModel } from '../parallel/parallel-model.ts';
import { simulate } from './cost-model.ts';
import { modelCost } from './model-cost.ts';
import { DEFAULT_OPTIONS, NEUTRAL_CALIBRATION, type SimOptions, type SimResult } from './types.ts';

const BETA = 2; // bf16 activations (the cluster's element size)

/** Step shape the refiner needs: tokens per rank per micro-batch before the MoE's sequence split. */
export interface RefinerShape { tp: number; tokens: number; seqLen: number }

/**
 * Split the executors' coarse compute charges (parallel-model.ts, ep/*.ts) into kernels with the shapes of
 * this step (GQA attention; MLA or CP charges are left as reported). Records the expert rows each rank
 * received per MoE layer call in `rows` (for the imbalance ρ).
 */
export function executorOpRefiner(cfg: ModelConfig, s: RefinerShape, rows: number[] = []) {
  const h = cfg.hiddenSize, T = s.tokens, tp = s.tp, V = cfg.vocabSize;
  const q = cfg.numHeads * cfg.headDim, kv = cfg.numKvHeads * cfg.headDim;
  const f = layerFlops(cfg, s.seqLen, true, true);
  const normBytes = BETA * h * T * (cfg.norm === 'sandwich' ? 8 : 4);
  const fwdBwd = (name: string, pass: string, ops: RefinedOp[]): RefinedOp[] =>
    pass === 'fwd' ? ops.map((o) => ({ name: `${name} ${o.name}`, cost: o.cost }))
      : ops.flatMap((o) => [{ name: `${name} ${o.name} dgrad`, cost: o.cost }, { name: `${name} ${o.name} wgrad`, cost: o.cost }]);
  const gemm = (name: string, m: number, n: number, k: number): RefinedOp => ({ name, cost: { gemm: [m, n, k] } });
  const bytes = (name: string, b: number): RefinedOp => ({ name, cost: { bytes: b } });
  return (_rank: number, name: string, cost: OpCost): RefinedOp[] | null => {
    let m: RegExpMatchArray | null;
    if (cfg.attention === 'gqa' && (m = name.match(/^(L\d+) attn (fwd|bwd)$/)))
      return fwdBwd(`${m[1]} attn`, m[2], [
        gemm('qkv', T, (q + 2 * kv) / tp, h), { name: 'core', cost: { flops: (T * f.attnCore) / tp } },
        gemm('out', T, h, q / tp), bytes('norm+residual', normBytes + BETA * T * 4 * h),
      ]);
    if ((m = name.match(/^(L\d+) mlp (fwd|bwd)$/))) {
      const fd = cfg.denseIntermediateSize / tp;
      return fwdBwd(`${m[1]} mlp`, m[2], [gemm('fc1', T, 2 * fd, h), gemm('fc2', T, h, fd), bytes('norm+act', normBytes + BETA * T * 3 * fd)]);
    }
    if ((m = name.match(/^experts (fwd|bwd)$/)) && 'gemm' in cost) {
      const r = cost.gemm[0], F = cfg.moe.expertHiddenSize;
      if (m[1] === 'fwd') rows.push(r);
      return fwdBwd('experts', m[1], [gemm('fc1', r, 2 * F, h), gemm('fc2', r, h, F), bytes('norm+permute+act', normBytes + BETA * r * (4 * h + 3 * F))]);
    }
    if (name === 'shared fwd' && 'gemm' in cost) {
      const Fs = cost.gemm[1] / 3;
      return fwdBwd('shared', 'fwd', [gemm('fc1', cost.gemm[0], 2 * Fs, h), gemm('fc2', cost.gemm[0], h, Fs)]);
    }
    if (name === 'router+shared bwd' && 'gemm' in cost) {
      const E = cfg.moe.numExperts, Fs = (cost.gemm[1] - 2 * E) / 6, Tr = cost.gemm[0];
      return fwdBwd('router+shared', 'bwd', [gemm('router', Tr, E, h), ...(Fs > 0 ? [gemm('shared fc1', Tr, 2 * Fs, h), gemm('shared fc2', Tr, h, Fs)] : [])]);
    }
    if ((m = name.match(/^head (fwd|bwd)$/)))
      return fwdBwd('head', m[1], [gemm('logits', T, V / tp, h), bytes('softmax', 4 * 3 * T * V / tp)]);
    return null;
  };
}

/** One small configuration: model shape, layout, device. */
export interface ExecCase {
  name: string;
  /** 'ep=4,dp=4' (ParallelModel layout; pp = cp = 1) */
  layout: string;
  hidden: number;
  layers: number;
  /** dense layers first (default 0) */
  denseLayers?: number;
  experts: number;
  topk: number;
  expertHidden: number;
  seqLen: number;
  /** sequences per DP rank (one micro-batch); default 1 */
  batchPerRank?: number;
  heads?: number;
  vocab?: number;
  device?: string;
  devicesPerNode?: number;
  dispatcher?: DispatcherKind;
  seed?: number;
}

export interface Components { compute: number; ep: number; tp: number; dp: number; other: number; wait: number; total: number }

export interface ExecComparison {
  case: ExecCase;
  /** executed makespan and per-component busy time of the slowest rank, seconds */
  executed: Components;
  /** simulate() for the same setup (total without the optimizer step), seconds */
  analytical: Components;
  /** analytical / executed − 1 */
  relError: number;
  /** measured ρ: mean over MoE layer calls of (max over ranks / mean) expert rows */
  imbalance: number;
  options: SimOptions;
  sim: SimResult;
  /** executed busy seconds of the slowest rank by op name (layer index dropped) */
  kernels: Record<string, number>;
}

export function caseConfig(c: ExecCase): ModelConfig {
  const heads = c.heads ?? 4;
  return resolveConfig('tiny', {
    hiddenSize: c.hidden, numLayers: c.layers, numDenseLayers: c.denseLayers ?? 0, denseIntermediateSize: 2 * c.hidden,
    numHeads: heads, numKvHeads: heads, headDim: c.hidden / heads, vocabSize: c.vocab ?? 256, attention: 'gqa', maxSeqLen: c.seqLen,
    moe: { numExperts: c.experts, topk: c.topk, expertHiddenSize: c.expertHidden, numSharedExperts: 0, auxLoss: [{ type: 'switch', coeff: 1e-2 }], zLossCoeff: 0 },
  });
}

const layoutDims = (layout: string) => {
  const d: Record<string, number> = {};
  for (const p of layout.split(',')) { const [k, v] = p.split('='); d[k.trim()] = Number(v); }
  return { tp: d.tp ?? 1, ep: d.ep ?? 1, dp: d.dp ?? 1 };
};

/**
 * Run one executed step of `c` and evaluate simulate() for it. Call `initBackend` first (or use
 * `runComparisons`). `naive` reproduces the comparison before the composition fixes: the executors' coarse
 * charges as reported (no refiner) against simulate() without launches, metadata collectives or per-tensor
 * gradient collectives.
 */
export function compareExecuted(c: ExecCase, o: { naive?: boolean } = {}): ExecComparison {
  const cfg = caseConfig(c), { tp, ep, dp } = layoutDims(c.layout), world = tp * dp;
  const b = c.batchPerRank ?? 1, B = b * dp, S = c.seqLen, spec = getSpec(c.device ?? 'ascend-910b');
  const perNode = c.devicesPerNode ?? spec.devicesPerNode;
  const tokens = Int32Array.from({ length: B * S }, (_, i) => (i * 31 + 7) % cfg.vocabSize);
  const targets = Int32Array.from({ length: B * S }, (_, i) => (i * 17 + 3) % cfg.vocabSize);
  const cluster = new Cluster({ spec, nodes: Math.ceil(world / perNode), devicesPerNode: perNode, dtype: 'bf16' });
  const pm = new ParallelModel(cfg, cluster, { layout: c.layout, seed: c.seed ?? 1, dispatcher: c.dispatcher ?? 'alltoall' });
  const rows: number[] = [];
  if (!o.naive) pm.clock.refine = executorOpRefiner(cfg, { tp, tokens: b * S, seqLen: S }, rows);
  else pm.clock.refine = (_r, name, cost) => { if (name === 'experts fwd' && 'gemm' in cost) rows.push(cost.gemm[0]); return null; };
  let names: string[];
  try {
    pm.forwardBackward(tokens, targets, B, S);
    names = pm.params[0].names();
  } finally { pm.dispose(); }
  const expertTensors = names.filter((n) => pm.expertParams.has(n)).length;

  // executed: per-component busy time of the rank that finishes last
  const ev = cluster.timeline.events;
  const end = new Map<number, number>();
  for (const e of ev) end.set(e.device, Math.max(end.get(e.device) ?? 0, e.end));
  const slow = [...end].sort((a, x) => x[1] - a[1])[0][0];
  const executed: Components = { compute: 0, ep: 0, tp: 0, dp: 0, other: 0, wait: 0, total: cluster.timeline.makespan };
  const kernels: Record<string, number> = {};
  for (const e of ev) {
    if (e.device !== slow) continue;
    const d = e.end - e.start, label = e.name.split(' ')[1] ?? '';
    const key = `${e.stream === 'compute' ? '' : 'comm '}${e.name.replace(/^L\d+ /, '').replace(/ (dp\.grads) .*/, ' $1')}`;
    kernels[key] = (kernels[key] ?? 0) + d;
    if (e.stream === 'compute') executed.compute += d;
    else if (label.startsWith('ep.')) executed.ep += d;
    else if (label.startsWith('tp.') || label.startsWith('vp.')) executed.tp += d;
    else if (label.startsWith('dp.')) executed.dp += d;
    else executed.other += d;
  }
  executed.wait = executed.total - executed.compute - executed.ep - executed.tp - executed.dp - executed.other;

  // measured imbalance: per MoE layer call (world consecutive charges), max / mean rows over the ranks
  let rhoSum = 0, calls = 0;
  for (let i = 0; i + world <= rows.length; i += world) {
    const xs = rows.slice(i, i + world), mean = xs.reduce((a, x) => a + x, 0) / world;
    if (mean > 0) { rhoSum += Math.max(...xs) / mean; calls++; }
  }
  const imbalance = calls ? rhoSum / calls : 1;

  const options: SimOptions = {
    ...DEFAULT_OPTIONS, recompute: 'none', recomputeModules: [], distributedOptimizer: false, dpOverlap: false,
    adaptivePipeOverlap: false, tpCommOverlap: 0, hierarchicalA2A: c.dispatcher === 'alltoall-hierarchical',
    flashAttention: true, imbalance, calibration: NEUTRAL_CALIBRATION,
    ...(o.naive ? { fixedCosts: 'none' as const } : { fixedCosts: 'executor' as const, epMetadata: true, dpBuckets: { dense: names.length - expertTensors, expert: expertTensors } }),
  };
  // the same node size as the executed cluster (a case may pack fewer devices per node than the catalogue)
  const simSpec = perNode === spec.devicesPerNode ? spec : { ...spec, devicesPerNode: perNode };
  const sim = simulate(modelCost(cfg, S), { tp, pp: 1, vpp: 1, ep, cp: 1, dp, microBatch: b, globalBatch: B, seqLen: S }, options, simSpec);
  const t = sim.time;
  const analytical: Components = {
    compute: t.compute + t.recompute, ep: t.epComm, tp: t.tpComm, dp: t.dpComm,
    other: t.cpComm + t.ppComm + t.bubble + t.swap + t.overhead, wait: 0, total: t.total - t.optimizer,
  };
  return { case: c, executed, analytical, relError: analytical.total / executed.total - 1, imbalance, options, sim, kernels };
}

/** The pinned configurations (tests/sim-executed.test.ts, examples/sim-vs-executed.ts). */
export const EXEC_CASES: ExecCase[] = [
  { name: 'ep2 dp2', layout: 'ep=2,dp=2', hidden: 256, layers: 2, experts: 16, topk: 2, expertHidden: 256, seqLen: 256 },
  { name: 'ep4 dp4', layout: 'ep=4,dp=4', hidden: 256, layers: 2, experts: 16, topk: 2, expertHidden: 256, seqLen: 256 },
  { name: 'ep8 dp8 2 nodes', layout: 'ep=8,dp=8', hidden: 256, layers: 2, experts: 32, topk: 4, expertHidden: 128, seqLen: 256, devicesPerNode: 4 },
  { name: 'ep8 dp8 2 nodes, hierarchical', layout: 'ep=8,dp=8', hidden: 256, layers: 2, experts: 32, topk: 4, expertHidden: 128, seqLen: 256, devicesPerNode: 4, dispatcher: 'alltoall-hierarchical' },
  { name: 'ep4 dp8 (edp2)', layout: 'ep=4,dp=8', hidden: 256, layers: 2, experts: 16, topk: 2, expertHidden: 256, seqLen: 256 },
  { name: 'tp2 ep2 dp2', layout: 'tp=2,ep=2,dp=2', hidden: 256, layers: 2, experts: 16, topk: 2, expertHidden: 256, seqLen: 256 },
  { name: 'dense+moe ep4 dp4', layout: 'ep=4,dp=4', hidden: 256, layers: 3, denseLayers: 1, experts: 32, topk: 4, expertHidden: 128, seqLen: 256 },
];

/** Run `cases` on the wasm backend. */
export async function runComparisons(cases: ExecCase[] = EXEC_CASES, o: { naive?: boolean } = {}): Promise<ExecComparison[]> {
  await initBackend('wasm');
  return cases.map((c) => compareExecuted(c, o));
}

const us = (s: number) => (s * 1e6).toFixed(1);
/**
 * Markdown table: executed vs analytical per component (µs) and the relative error; with `naive` (the same
 * cases run with `{ naive: true }`) a column of the error before the composition fixes.
 */
export function comparisonTable(rs: ExecComparison[], naive?: ExecComparison[]): string {
  const head = `| config | layout | ρ | executed µs | analytical µs | error |${naive ? ' error before |' : ''} compute e / a | EP e / a | TP e / a | DP e / a | wait (executed) |\n|---|---|---|---|---|---|${naive ? '---|' : ''}---|---|---|---|---|`;
  return [head, ...rs.map((r, i) => {
    const e = r.executed, a = r.analytical;
    const before = naive ? ` ${(100 * naive[i].relError).toFixed(1)}% |` : '';
    return `| ${r.case.name} | ${r.case.layout} | ${r.imbalance.toFixed(2)} | ${us(e.total)} | ${us(a.total)} | ${(100 * r.relError).toFixed(1)}% |${before} ${us(e.compute)} / ${us(a.compute)} | ${us(e.ep)} / ${us(a.ep)} | ${us(e.tp)} / ${us(a.tp)} | ${us(e.dp)} / ${us(a.dp)} | ${us(e.other + e.wait)} |`;
  })].join('\n');
}
