// Memory benchmark: peak activation memory and simulated step time of one training step of `tiny`
// on a simulated Ascend 910B, for no recomputation, each selective option, full recomputation,
// swapping, and the memory planner under a budget (default 30% of the no-recomputation peak).
// Everything is executed (real tensors, gradients checked bitwise against no recomputation); memory
// comes from the device ledgers, time from the executed timeline (device cost functions). Each row also
// records the cost model's prediction for the same plan (lifecycle peak, pipeline-simulated step), which
// equals the executed numbers (tests/memory-plan-executed.test.ts pins this on a shrunken model).
// Two layouts on one simulated node: pp=1 (one NPU, M micro-batches, every variant) and pp=4 (one
// layer per stage, 1F1B over 8 micro-batches; none, Pangu-style selective, full, planner).
// Usage: npx tsx bench/memory.ts [--batch 4] [--seq 256] [--micro-batches 2] [--budget 0.3] [--extra-budgets 0.35,0.4,0.45] [--no-pp1] [--no-pp4]
//        → bench/results/memory.json
import { writeFileSync, mkdirSync } from 'node:fs';
import { initBackend } from '../src/backend/tf.ts';
import { resolveConfig } from '../src/model/config.ts';
import { MoEGPT } from '../src/model/gpt.ts';
import { predictStepSeconds, runTrainStep, type TrainStepOptions } from '../src/parallel/exec/train-step.ts';
import { sendRecvTime } from '../src/device/cost.ts';
import { getSpec } from '../src/device/specs.ts';
import { gradArrays, toyMicroBatches } from '../src/parallel/exec/reference.ts';
import { exposedSwap } from '../src/parallel/exec/report.ts';
import { execLayout } from '../src/parallel/exec/layout.ts';
import { makeSchedule, predictPlan, stageCostModels } from '../src/parallel/exec/train-step.ts';
import { partitionLayers } from '../src/parallel/pipeline/partition.ts';
import { planMemory } from '../src/parallel/memory/planner.ts';

const argv = process.argv.slice(2);
const arg = (k: string, d: string) => (argv.includes(`--${k}`) ? argv[argv.indexOf(`--${k}`) + 1] : d);
const B = Number(arg('batch', '4')), S = Number(arg('seq', '256')), M = Number(arg('micro-batches', '2'));
const budgetFraction = Number(arg('budget', '0.3'));
// further planner budgets (fractions of the no-recompute peak), to show where 10% becomes reachable
const extraBudgets = arg('extra-budgets', '0.35,0.4,0.45').split(',').filter(Boolean).map(Number);
let pp = 1, mbs = toyMicroBatchesLazy(M);

await initBackend('wasm');
const cfg = resolveConfig('tiny');
const model = new MoEGPT(cfg, 1);
function toyMicroBatchesLazy(n: number) { return toyMicroBatches(n, B, S, 256); }

const SELECTIVE = ['norm', 'mla_down_proj', 'mla_up_proj', 'core_attn', 'attn_proj', 'permute', 'expert_fc1', 'moe_act', 'mlp_fc1', 'mlp_act'];
const variants: [string, Partial<TrainStepOptions>][] = [
  ['none', {}],
  ...SELECTIVE.map((c): [string, Partial<TrainStepOptions>] => [`selective:${c}`, { recompute: c }]),
  ['selective:pangu (mla_up_proj,moe_act,mlp_act,norm,permute)', { recompute: 'mla_up_proj,moe_act,mlp_act,norm,permute' }],
  ['selective:megatron default (core_attn)', { recompute: 'core_attn' }],
  ['full', { recompute: 'full' }],
  ['swap:core_attn', { swap: 'core_attn' }],
  ['swap:core_attn,moe_act,expert_fc1', { swap: 'core_attn,moe_act,expert_fc1' }],
  ['swap:all but residual (minOffloadSize 64 KiB)', { swap: 'norm,mla_down_proj,mla_up_proj,core_attn,attn_proj,permute,expert_fc1,moe_act,mlp_fc1,mlp_act', minOffloadSize: 65536 }],
];

type Row = { variant: string; peakActivationBytes: number; peakFraction: number; hbmActivationsPeak: number; hostSwappedPeak: number;
  stepTimeSeconds: number; addedFraction: number; predictedPeakBytes: number; predictedAddedFraction: number; exposedSwapSeconds: number; gradsBitwise: boolean; fits?: boolean; budgetBytes?: number };
let rows: Row[] = [];
let base: { peak: number; step: number; grads: Map<string, Float32Array> } | null = null;

async function run(variant: string, extra: Partial<TrainStepOptions>): Promise<Row> {
  for (const l of model.moeLayers()) l.resetGlobalAux();
  const t0 = Date.now();
  const r = await runTrainStep(model, { pp, microBatches: mbs, gantt: false, ...extra });
  for (const p of r.planner) console.log(`  planner predicted: fits ${p.fits}, peak ${(p.cost.peakBytes / 2 ** 20).toFixed(2)} MiB of ${(p.baseline.peakBytes / 2 ** 20).toFixed(2)}, added ${(100 * p.cost.addedFraction).toFixed(1)}%; ` +
    p.explanation.filter((e) => e.decision !== 'keep').map((e) => `${e.module}:${e.decision}`).join(' '));
  // predicted step: the pipeline simulator over the ranks' predicted times; relative to the same without the plan
  const p2p = r.cluster.spec.intraNode;
  const predBase = predictStepSeconds(r.schedule, r.predicted, pp > 1 ? sendRecvTime(B * S * model.cfg.hiddenSize * 4, p2p) : 0, false);
  const pred = { peak: Math.max(...r.predicted.map((c) => c.peakBytes)), added: r.predictedStepSeconds / predBase - 1 };
  const g = gradArrays(r.grads); r.grads.dispose();
  const peak = Math.max(...r.peakActivationBytes);
  if (!base) base = { peak, step: r.stepTimeSeconds, grads: g };
  let bitwise = true;
  for (const [n, want] of base.grads) { const got = g.get(n)!; for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) { bitwise = false; break; } }
  const row: Row = {
    variant, peakActivationBytes: peak, peakFraction: peak / base.peak,
    hbmActivationsPeak: Math.max(...r.perDevicePeakByCategory.map((p) => p.activations ?? 0)),
    hostSwappedPeak: Math.max(...r.hostSwappedPeakBytes), stepTimeSeconds: r.stepTimeSeconds,
    addedFraction: r.stepTimeSeconds / base.step - 1, predictedPeakBytes: pred.peak, predictedAddedFraction: pred.added, exposedSwapSeconds: Math.max(...exposedSwap(r.cluster, r.run.ledgers.map((_, i) => i))),
    gradsBitwise: bitwise,
  };
  console.log(`${variant.padEnd(58)} peak ${(peak / 2 ** 20).toFixed(2).padStart(7)} MiB (${(100 * row.peakFraction).toFixed(1).padStart(5)}%)` +
    `  host ${(row.hostSwappedPeak / 2 ** 20).toFixed(2).padStart(6)} MiB  step ${(r.stepTimeSeconds * 1e6).toFixed(1).padStart(8)} µs (+${(100 * row.addedFraction).toFixed(1)}%)` +
    `  predicted ${(pred.peak / 2 ** 20).toFixed(2)} MiB +${(100 * pred.added).toFixed(1)}%  bitwise ${bitwise}  [${Date.now() - t0} ms]`);
  return row;
}

async function layout(variantList: [string, Partial<TrainStepOptions>][]): Promise<Row[]> {
  rows = [];
  base = null;
  for (const [name, extra] of variantList) rows.push(await run(name, extra));
  for (const f of [budgetFraction, ...extraBudgets]) {
    const budgetBytes = Math.floor(f * base!.peak);
    const planned = await run(`planner (budget ${(100 * f).toFixed(0)}% = ${(budgetBytes / 2 ** 20).toFixed(2)} MiB)`, { memoryBudget: budgetBytes });
    planned.budgetBytes = budgetBytes;
    planned.fits = planned.peakActivationBytes <= budgetBytes;
    rows.push(planned);
    console.log(`pp=${pp} planner: fits ${planned.fits}, peak ${(100 * planned.peakFraction).toFixed(1)}% of no-recompute, added step time ${(100 * planned.addedFraction).toFixed(1)}% (goal ≤ 10%)`);
  }
  console.log('');
  return rows;
}

/**
 * The counterfactual without early release (module backwards keep every saved entry until the
 * layer's end, SavedActivations.earlyRelease = false): the planner's plan and its cost under that
 * rule, from the cost model (its replay with `release: false` equals the executed ledger,
 * tests/memory-early-release.test.ts), at the same budget.
 */
function plannerWithoutRelease(budgetBytes: number, basePeak: number) {
  const lay = execLayout(cfg, B, S);
  const part = partitionLayers(Array.from({ length: cfg.numLayers }, (_, l) => lay.layerFlops.get(l) ?? 0), pp, 1);
  const o = { pp, microBatches: mbs };
  const models = stageCostModels(part, o, '1f1b', getSpec('ascend-910b'), lay.layerFlops, lay, cfg.numMtpLayers).map((m) => ({ ...m, model: { ...m.model, release: false } }));
  const entries = models.flatMap(({ layers, model: cm }) => {
    const mine = lay.descs.filter((d) => layers.has(d.layer));
    return mine.length ? planMemory(mine, { ...cm, budgetBytes, granularity: 'tensor' }).plan.entries : [];
  });
  const sched = makeSchedule('1f1b', pp, 1, mbs.length);
  const p2p = pp > 1 ? sendRecvTime(B * S * cfg.hiddenSize * 4, getSpec('ascend-910b').intraNode) : 0;
  const pred = predictPlan({ entries, fullLayers: [] }, lay.descs, models), base = predictPlan(null, lay.descs, models);
  const peak = Math.max(...pred.map((c) => c.peakBytes));
  const added = predictStepSeconds(sched, pred, p2p) / predictStepSeconds(sched, base, p2p, false) - 1;
  console.log(`planner (budget ${(100 * budgetBytes / basePeak).toFixed(0)}%) WITHOUT early release (predicted): peak ${(100 * peak / basePeak).toFixed(1)}%, added ${(100 * added).toFixed(1)}%`);
  return { budgetBytes, predictedPeakBytes: peak, predictedPeakFraction: peak / basePeak, predictedAddedFraction: added, fits: peak <= budgetBytes };
}

console.log(`tiny, batch ${B} × seq ${S}, pp=1, ${M} micro-batches (peak = max over ranks of resident saved activations)`);
const single = argv.includes('--no-pp1') ? [] : await layout(variants);
const noRelease1 = single.length ? plannerWithoutRelease(Math.floor(budgetFraction * single[0].peakActivationBytes), single[0].peakActivationBytes) : null;
let pp4: Row[] = [];
let noRelease4: ReturnType<typeof plannerWithoutRelease> | null = null;
if (!argv.includes('--no-pp4')) {
  pp = 4; mbs = toyMicroBatchesLazy(8);
  console.log(`tiny, batch ${B} × seq ${S}, pp=4 (1 layer per stage), 1F1B, 8 micro-batches`);
  pp4 = await layout([variants[0], variants.find((v) => v[0].startsWith('selective:pangu'))!, variants.find((v) => v[0] === 'full')!]);
  noRelease4 = plannerWithoutRelease(Math.floor(budgetFraction * pp4[0].peakActivationBytes), pp4[0].peakActivationBytes);
}

mkdirSync('bench/results', { recursive: true });
writeFileSync('bench/results/memory.json', JSON.stringify({
  preset: 'tiny', batch: B, seqLen: S, device: 'ascend-910b (simulated)', budgetFraction,
  layouts: [{ pp: 1, microBatches: M, rows: single, plannerWithoutEarlyRelease: noRelease1 }, { pp: 4, microBatches: 8, schedule: '1f1b', rows: pp4, plannerWithoutEarlyRelease: noRelease4 }],
}, null, 2));
console.log('wrote bench/results/memory.json');
