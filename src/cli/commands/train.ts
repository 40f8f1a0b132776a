// `ultramoe train`: train a preset locally on the shipped corpus, arithmetic or a text file.
import { parse, UsageError } from '../args.ts';
import type { BackendName } from '../../backend/tf.ts';
import type { ConfigOverrides } from '../../model/config.ts';
import { runTraining, validateRun, type RunOptions } from '../../train/run.ts';
import { defaultTrainConfig } from '../../train/trainer.ts';
import { DEFAULT_ADAMW } from '../../train/optimizer.ts';

export const summary = 'train a model locally (metrics, checkpoints, report.html); --resume continues bit-exactly';

const usage = `ultramoe train [--preset tiny] [--steps N] [--backend wasm|cpu|node] [--seed N]
    [--data text|arith[:add|mul|addmul][:DIGITS]|<file>] [--tokenizer byte|bpe[:N]]
    [--batch N] [--seq N] [--micro-batches M] [--lr X] [--min-lr X] [--warmup N] [--clip X] [--weight-decay X]
    [--eval-every N] [--eval-batches N] [--checkpoint-every N] [--override JSON] [--out DIR] [--resume DIR] [--json]
    [--trace-loads FILE]                                  expert-load trace (bench/traces format)
  parallel training on simulated devices (docs/training.md):
    [--parallel tp=2,ep=4,dp=2] [--device ascend-910b|FILE.json] [--device-memory 64MiB]
    [--dispatcher alltoall|hierarchical|allgather] [--distributed-optimizer] [--sequence-parallel] [--trace FILE.json]
    [--placement static|dynamic] [--placement-solver greedy|eplb|ours] [--placement-period N]
    [--placement-threshold X] [--redundant-slots R]
  pipeline parallelism, recomputation and swapping through the executors (src/parallel/exec, src/parallel/pp):
    [--parallel pp=4[,ep=2,tp=2,dp=2]] [--vpp 2] [--schedule 1f1b|interleaved|gpipe] [--overlap on|off]
    [--overlap-compare on|off (pp × ep: also run the first batch with the other --overlap mode; default on)]
    [--recompute none|full|CLASSES] [--recompute-num-layers N] [--swap none|CLASSES] [--min-offload-size BYTES]
    [--offload-fraction F] [--memory-budget BYTES] [--device ascend-910b] [--device-memory 64MiB] [--trace FILE.json]
    (--recompute/--swap/--memory-budget run with pp alone, without --parallel (pp=1), and with tp/dp/ep inside
     the pp stages, where recompute takes the local classes only (not full, permute, router); pp with stages also
     runs --vpp/--schedule/--overlap/--dispatcher/--sequence-parallel; --overlap on needs ep > 1)`;

const options = {
  preset: { type: 'string', default: 'tiny' },
  steps: { type: 'string', default: '180' },
  backend: { type: 'string', default: 'wasm' },
  seed: { type: 'string', default: '1' },
  data: { type: 'string', default: 'text' },
  tokenizer: { type: 'string', default: 'byte' },
  batch: { type: 'string', default: '16' },
  seq: { type: 'string', default: '64' },
  'micro-batches': { type: 'string', default: '1' },
  lr: { type: 'string', default: '3e-3' },
  'min-lr': { type: 'string' },
  warmup: { type: 'string', default: '15' },
  clip: { type: 'string', default: '1' },
  'weight-decay': { type: 'string', default: String(DEFAULT_ADAMW.weightDecay) },
  'eval-every': { type: 'string', default: '25' },
  'eval-batches': { type: 'string', default: '4' },
  'checkpoint-every': { type: 'string', default: '0' },
  override: { type: 'string', default: '{}' },
  out: { type: 'string' },
  resume: { type: 'string' },
  json: { type: 'boolean', default: false },
  'trace-loads': { type: 'string' },
  parallel: { type: 'string' },
  device: { type: 'string' },
  'device-memory': { type: 'string' },
  dispatcher: { type: 'string' },
  'distributed-optimizer': { type: 'boolean' },
  'sequence-parallel': { type: 'boolean' },
  trace: { type: 'string' },
  placement: { type: 'string' },
  'placement-solver': { type: 'string' },
  'placement-period': { type: 'string' },
  'placement-threshold': { type: 'string' },
  'redundant-slots': { type: 'string' },
  vpp: { type: 'string' },
  schedule: { type: 'string' },
  recompute: { type: 'string' },
  'recompute-num-layers': { type: 'string' },
  swap: { type: 'string' },
  'min-offload-size': { type: 'string' },
  'offload-fraction': { type: 'string' },
  'memory-budget': { type: 'string' },
  overlap: { type: 'string' },
  'overlap-compare': { type: 'string' },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

/** Parse argv into RunOptions plus every problem found (flags and config), before any work. */
export function parseTrainArgs(argv: string[], isTty: boolean): { opts: RunOptions; problems: string[]; json: boolean; help: boolean } {
  const { values: v, tokens } = { ...parse(argv, options, usage), tokens: argv };
  const problems: string[] = [];
  const num = (_flag: string, s: string) => (s.trim() === '' ? NaN : Number(s)); // validateRun reports NaN
  let overrides: ConfigOverrides = {};
  try { overrides = JSON.parse(v.override); } catch { problems.push(`--override must be a JSON object, e.g. '{"hiddenSize":64,"moe":{"numExperts":32}}' (got '${v.override}')`); }
  const lr = num('lr', v.lr);
  const explicit = new Set(tokens.filter((t) => t.startsWith('--')).map((t) => t.slice(2).split('=')[0]));
  const opts: RunOptions = {
    preset: v.preset, overrides, backend: v.backend as BackendName, data: v.data, tokenizer: v.tokenizer,
    train: defaultTrainConfig({
      steps: num('steps', v.steps), seed: num('seed', v.seed), batch: num('batch', v.batch), seqLen: num('seq', v.seq),
      microBatches: num('micro-batches', v['micro-batches']), lr, minLr: v['min-lr'] !== undefined ? num('min-lr', v['min-lr']) : lr / 10,
      warmupSteps: num('warmup', v.warmup), gradClip: num('clip', v.clip),
      adamw: { ...DEFAULT_ADAMW, weightDecay: num('weight-decay', v['weight-decay']) },
      evalEvery: num('eval-every', v['eval-every']), evalBatches: num('eval-batches', v['eval-batches']),
    }),
    out: v.out ?? null, resume: v.resume ?? null, checkpointEvery: num('checkpoint-every', v['checkpoint-every']),
    progress: v.json ? 'none' : isTty ? 'bar' : 'lines', explicit,
    traceLoads: v['trace-loads'] ?? null,
    parallel: {
      parallel: v.parallel, device: v.device, deviceMemory: v['device-memory'], dispatcher: v.dispatcher, distributedOptimizer: v['distributed-optimizer'], sequenceParallel: v['sequence-parallel'],
      trace: v.trace, placement: v.placement, placementSolver: v['placement-solver'], placementPeriod: v['placement-period'],
      placementThreshold: v['placement-threshold'], redundantSlots: v['redundant-slots'],
    },
    pipeline: {
      vpp: v.vpp, schedule: v.schedule, recompute: v.recompute, recomputeNumLayers: v['recompute-num-layers'], swap: v.swap, minOffloadSize: v['min-offload-size'],
      offloadFraction: v['offload-fraction'], memoryBudget: v['memory-budget'], overlap: v.overlap, overlapCompare: v['overlap-compare'],
    },
  };
  problems.push(...validateRun(opts));
  return { opts, problems, json: v.json, help: v.help };
}

export async function run(argv: string[]): Promise<number> {
  let parsed;
  try { parsed = parseTrainArgs(argv, Boolean(process.stdout.isTTY)); } catch (e) {
    if (e instanceof UsageError) { console.error(e.message); return 2; }
    throw e;
  }
  if (parsed.help) { console.log(`usage: ${usage}`); return 0; }
  if (parsed.problems.length) {
    console.error(`ultramoe train: ${parsed.problems.length} problem${parsed.problems.length > 1 ? 's' : ''}:\n  - ${parsed.problems.join('\n  - ')}\nusage: ${usage}`);
    return 2;
  }
  const log = parsed.json ? (s: string) => console.error(s) : (s: string) => console.log(s);
  const s = await runTraining(parsed.opts, log);
  const lines = [
    `steps ${s.steps}  loss ${s.lossStart.toFixed(3)} -> ${s.lossEnd.toFixed(3)}  val ${s.valLoss.toFixed(3)} ` +
      `(uniform ln V = ${s.uniformLoss.toFixed(3)}, ${(100 * s.valLossBelowUniform).toFixed(1)}% below)`,
    `${Math.round(s.tokensPerSecond)} tokens/s  local MFU ${(100 * s.localMfu).toFixed(2)}% of ${s.peakGflops.toFixed(1)} GFLOP/s  ` +
      `expert load max/mean ${s.expertLoadMaxOverMean.toFixed(2)}` + (s.exactMatch !== null ? `  exact match ${(100 * s.exactMatch).toFixed(1)}%` : '') + `  ${s.seconds.toFixed(0)} s`,
    `report: ${s.report}`,
    `checkpoint: ${s.checkpoint}`,
  ];
  if (s.parallel) {
    const p = s.parallel, MiB = (b: number) => (b / 2 ** 20).toFixed(1);
    lines.push(`simulated ${p.layout} on ${p.device}: ${p.simulatedStepSeconds.toPrecision(3)} s/step, peak HBM per device ${MiB(Math.min(...p.perDevicePeakMemoryBytes))}–${MiB(Math.max(...p.perDevicePeakMemoryBytes))} MiB, ` +
      `comm ${MiB(p.commBytes.total)} MiB (${Object.entries(p.commBytes.byKind).map(([k, b]) => `${k} ${MiB(b)}`).join(', ')})`);
    if (p.placement) lines.push(`placement ${p.placement.solver}: ${p.placement.migrations} re-placements, ${p.placement.migratedSlots} slots, ${MiB(p.placement.migratedBytes)} MiB migrated; ` +
      `simulated expert time ${p.placement.moeSecondsBefore.toPrecision(3)} → ${p.placement.moeSecondsAfter.toPrecision(3)} s/step, EP load max/mean ${p.placement.deviceLoadMaxOverMeanBefore.toFixed(2)} → ${p.placement.deviceLoadMaxOverMeanAfter.toFixed(2)}`);
  }
  if (s.pipeline) {
    const p = s.pipeline, MiB = (b: number) => (b / 2 ** 20).toFixed(1);
    const st = p.stages;
    lines.push(`simulated ${st ? st.layout : `pp=${p.pp}`} vpp=${p.vpp} ${p.schedule} on ${p.device} (${st ? `overlap ${st.overlap ? 'on' : 'off'}` : `recompute ${p.recompute}, swap ${p.swap}`}): ${(1e3 * p.simulatedStepSeconds).toPrecision(3)} ms/step ` +
      (Number.isFinite(p.predictedStepSeconds) ? `(predicted ${(1e3 * p.predictedStepSeconds).toPrecision(3)}), ` : '') + `bubble ${(100 * p.bubbleFraction).toFixed(1)}%` +
      (st ? `, EP a2a hidden ${(100 * st.epCommHiddenFraction).toFixed(1)}% (${st.pairsPerStep.toFixed(0)} F/B pairs/step)` : ''));
    if (st?.otherMode) lines.push(`  same first batch with overlap ${st.otherMode.overlap ? 'on' : 'off'}: ${(1e3 * st.otherMode.stepSeconds).toPrecision(3)} ms/step, bubble ${(100 * st.otherMode.bubbleFraction).toFixed(1)}%, EP a2a hidden ${(100 * st.otherMode.epCommHiddenFraction).toFixed(1)}%`);
    p.perDevicePeakByCategory.forEach((c, r) => lines.push(`  device ${r} [layers ${p.stageLayers[st ? st.stageDevices.findIndex((d) => d.includes(r)) : r]?.map((x) => x.join(',')).join(' | ')}]: peak ${MiB(c.total ?? 0)} MiB = ` +
      Object.entries(c).filter(([k]) => k !== 'total').map(([k, b]) => `${k} ${MiB(b)}`).join(', ') + `; saved activations ${MiB(p.peakActivationBytes[r] ?? 0)} MiB`));
    if (p.hostSwappedPeakBytes.some((b) => b > 0)) lines.push(`  host swapped peak ${p.hostSwappedPeakBytes.map(MiB).join(', ')} MiB`);
    if (p.plan) lines.push(`  plan: ${p.plan.keep} kept, ${p.plan.recompute} recomputed (${MiB(p.plan.recomputedBytes)} MiB), ${p.plan.swap} swapped (${MiB(p.plan.swappedBytes)} MiB), full layers [${p.plan.fullLayers.join(',')}]`);
    p.planner.forEach((x, r) => lines.push(`  planner rank ${r}: ${x.fits ? 'fits' : 'does NOT fit'}, predicted peak ${MiB(x.predictedPeakBytes)} of ${MiB(x.baselinePeakBytes)} MiB, +${(100 * x.predictedAddedFraction).toFixed(1)}% time; ` +
      x.classes.filter((c) => c.decision !== 'keep').map((c) => `${c.module} ${c.decision}`).join(', ')));
    lines.push(`  gantt: ${p.gantt}${p.trace ? `  trace: ${p.trace}` : ''}`);
  }
  for (const l of lines) log(l);
  if (parsed.json) console.log(JSON.stringify(s));
  return 0;
}
