// A whole training run as the CLI and examples use it: validate everything up front, build (or
// resume) dataset, model and trainer, train with progress output, checkpoint, write metrics and
// report.html, and return a summary.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import cliProgress from 'cli-progress';
import { initBackend, type BackendName } from '../backend/tf.ts';
import { ConfigError, resolveConfig, validateConfig, type ConfigOverrides, type ModelConfig } from '../model/config.ts';
import { countParams } from '../model/params-count.ts';
import { applyCheckpoint, configDiff, loadCheckpoint, saveCheckpoint, type LoadedCheckpoint, type RunSpec } from './checkpoint.ts';
import { loadDataset, parseDataSpec } from './data.ts';
import { arithExactMatch } from './generate.ts';
import { machinePeak, saveMetrics } from './metrics.ts';
import { createModel, flopsPerToken } from './model.ts';
import { writeReport } from './report.ts';
import { parseTokenizerSpec } from './tokenizer.ts';
import { Trainer, defaultTrainConfig, type TrainConfig } from './trainer.ts';
import { ParallelEngine } from './parallel.ts';
import { parseParallelFlags, type RawParallelFlags } from './parallel-flags.ts';
import { parallelSummary, parallelTables, type ParallelRunSummary } from './parallel-report.ts';
import { loadTraceJSON } from './load-trace.ts';
import { parsePipelineFlags, wantsPipeline, type PipelineFlags, type RawPipelineFlags } from './pipeline-flags.ts';
import { PipelineEngine, pipelineTables, type PipelineRunSummary } from './pipeline.ts';
import type { MoEGPT } from '../model/gpt.ts';

export interface RunOptions {
  preset: string;
  overrides: ConfigOverrides;
  backend: BackendName;
  data: string;
  tokenizer: string;
  train: TrainConfig;
  out: string | null;
  resume: string | null;
  checkpointEvery: number; // 0 = only at the end
  progress: 'bar' | 'lines' | 'none';
  /** Flags given explicitly (on resume they must agree with the checkpoint, or are allowed to change it). */
  explicit: Set<string>;
  /** --parallel and friends (parallel-flags.ts); absent = single device */
  parallel?: RawParallelFlags;
  /** --vpp, --schedule, --recompute, --swap, --memory-budget … (pipeline-flags.ts): the run goes through
   *  src/parallel/exec's runTrainStep when any is given or --parallel has pp > 1 */
  pipeline?: RawPipelineFlags;
  /** --trace-loads FILE: write the run's tokens per expert per layer per step as an expert-load trace */
  traceLoads?: string | null;
}

/** Every problem with the options, before any work (empty when valid). */
export function validateRun(o: RunOptions): string[] {
  const p: string[] = [];
  const t = o.train;
  const posInt = (flag: string, v: number) => { if (!(Number.isInteger(v) && v > 0)) p.push(`${flag} must be a positive integer (got ${v})`); };
  posInt('--steps', t.steps); posInt('--batch', t.batch); posInt('--seq', t.seqLen); posInt('--micro-batches', t.microBatches); posInt('--eval-batches', t.evalBatches);
  if (!(Number.isInteger(t.evalEvery) && t.evalEvery >= 0)) p.push(`--eval-every must be an integer >= 0 (got ${t.evalEvery})`);
  if (!(Number.isInteger(o.checkpointEvery) && o.checkpointEvery >= 0)) p.push(`--checkpoint-every must be an integer >= 0 (got ${o.checkpointEvery})`);
  if (!(t.lr > 0)) p.push(`--lr must be > 0 (got ${t.lr})`);
  if (!(t.minLr >= 0 && t.minLr <= t.lr)) p.push(`--min-lr must be in [0, lr] (got ${t.minLr})`);
  if (!(Number.isInteger(t.warmupSteps) && t.warmupSteps >= 0)) p.push(`--warmup must be an integer >= 0 (got ${t.warmupSteps})`);
  if (!(t.gradClip >= 0)) p.push(`--clip must be >= 0 (got ${t.gradClip})`);
  if (!(Number.isInteger(t.seed) && t.seed >= 1)) p.push(`--seed must be an integer >= 1 (got ${t.seed})`);
  if (!['wasm', 'cpu', 'node'].includes(o.backend)) p.push(`--backend must be wasm, cpu or node (got '${o.backend}')`);
  const d = parseDataSpec(o.data);
  if (typeof d === 'string') p.push(d);
  const tok = parseTokenizerSpec(o.tokenizer);
  if (typeof tok === 'string') p.push(tok);
  if (o.resume && !existsSync(o.resume)) p.push(`--resume: no such directory '${o.resume}'`);
  const cfg = modelConfigFor(o);
  if (typeof cfg === 'string') p.push(cfg);
  else {
    p.push(...validateConfig(cfg).map((x) => `model: ${x}`));
    if (t.seqLen > cfg.maxSeqLen) p.push(`--seq ${t.seqLen} exceeds the model's maxSeqLen ${cfg.maxSeqLen}`);
  }
  const pipe = pipelineFlagsOf(o, typeof cfg === 'string' ? null : cfg);
  if (pipe) { p.push(...pipe.problems); return p; }
  const par = parseParallelFlags(o.parallel ?? {}, typeof cfg === 'string' ? null : cfg, t.batch, t.seqLen, t.microBatches);
  p.push(...par.problems);
  if (o.pipeline?.overlap === 'on') p.push('--overlap on needs --parallel pp>1 with ep>1 (it overlaps the pipelined EP all-to-all, src/parallel/pp); use --overlap off');
  else if (o.pipeline?.overlap !== undefined && o.pipeline.overlap !== 'off') p.push(`--overlap must be on or off (got '${o.pipeline.overlap}')`);
  if (o.resume && par.flags?.distributedOptimizer) p.push('--resume with --distributed-optimizer: the sharded optimizer state cannot be restored (resume without it)');
  return p;
}

/** The pipeline-executor flags and their problems, or null when the run does not use the executor. */
export function pipelineFlagsOf(o: RunOptions, cfg: ModelConfig | null): { flags: PipelineFlags | null; problems: string[] } | null {
  const raw = o.pipeline ?? {}, par = o.parallel ?? {};
  if (!wantsPipeline(par.parallel, raw)) return null;
  return parsePipelineFlags(par.parallel, raw, { device: par.device, deviceMemory: par.deviceMemory, trace: par.trace },
    { dispatcher: par.dispatcher, distributedOptimizer: par.distributedOptimizer, sequenceParallel: par.sequenceParallel, placement: par.placement, placementSolver: par.placementSolver,
      placementPeriod: par.placementPeriod, placementThreshold: par.placementThreshold, redundantSlots: par.redundantSlots }, cfg, o.train.microBatches);
}

/** The model config: preset + overrides, vocabulary from the tokenizer. */
export function modelConfigFor(o: RunOptions): ModelConfig | string {
  const tok = parseTokenizerSpec(o.tokenizer);
  const vocabSize = typeof tok === 'string' || tok.kind === 'byte' ? 256 : tok.vocabSize;
  try { return resolveConfig(o.preset, { ...o.overrides, vocabSize }); } catch (e) {
    return e instanceof ConfigError ? e.problems.map((x) => `model config: ${x}`).join('\n  - ') : (e as Error).message;
  }
}

export interface RunSummary {
  steps: number;
  lossStart: number;
  lossEnd: number;
  valLoss: number;
  uniformLoss: number;
  valLossBelowUniform: number; // 1 − valLoss/ln(V)
  tokensPerSecond: number;
  localMfu: number;
  expertLoadMaxOverMean: number;
  exactMatch: number | null;
  /** parallel runs: the simulated cluster (memory, communication, timeline, placement) */
  parallel?: ParallelRunSummary;
  /** pipeline / recompute / swap runs: memory per device by category, bubble, simulated step, plan, planner */
  pipeline?: PipelineRunSummary;
  bubbleFraction?: number;
  perDevicePeakMemoryBytes?: number[];
  commBytes?: ParallelRunSummary['commBytes'];
  simulatedStepSeconds?: number;
  loadTrace?: string;
  params: number;
  activatedParams: number;
  flopsPerToken: number;
  peakGflops: number;
  seconds: number;
  outDir: string;
  report: string;
  checkpoint: string;
  metricsCsv: string;
}

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);

export async function runTraining(o: RunOptions, log: (s: string) => void = console.log): Promise<RunSummary> {
  const t0 = performance.now();
  // Resume: the checkpoint's run spec and train config win unless a flag was given explicitly.
  let ck: LoadedCheckpoint | null = null;
  if (o.resume) {
    ck = loadCheckpoint(o.resume); // verifies every file's SHA-256 first
    const mismatch: string[] = [];
    for (const k of ['data', 'tokenizer', 'preset'] as const)
      if (o.explicit.has(k) && o[k] !== ck.run[k]) mismatch.push(`--${k} ${o[k]} != checkpoint's ${ck.run[k]}`);
    if (mismatch.length) throw new Error(`checkpoint ${join(ck.dir, 'trainer.json')} was made with a different run:\n  - ${mismatch.join('\n  - ')}`);
    o = { ...o, data: ck.run.data, tokenizer: ck.run.tokenizer, preset: ck.run.preset,
      train: { ...ck.train, steps: o.explicit.has('steps') ? o.train.steps : ck.train.steps, evalEvery: o.explicit.has('eval-every') ? o.train.evalEvery : ck.train.evalEvery } };
    if (!o.explicit.has('override')) o.overrides = ck.modelConfig;
  }
  const cfg = modelConfigFor(o);
  if (typeof cfg === 'string') throw new Error(cfg);
  if (ck) {
    const diff = configDiff(ck.modelConfig, cfg);
    if (diff.length) throw new Error(`checkpoint ${join(ck.dir, 'config.json')} does not match the requested model:\n  - ${diff.join('\n  - ')}`);
  }
  await initBackend(o.backend);
  const ds = loadDataset(o.data, o.tokenizer, o.train.seed, ck?.tokenizer);
  if (ds.tokenizer.vocabSize !== cfg.vocabSize) throw new Error(`tokenizer vocabulary ${ds.tokenizer.vocabSize} != model vocabSize ${cfg.vocabSize}`);
  const outDir = resolve(ck ? dirname(ck.dir) : o.out ?? join('runs', new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)));
  mkdirSync(outDir, { recursive: true });

  const model = createModel(cfg, o.train.seed);
  const peak = machinePeak();
  const fpt = flopsPerToken(cfg, o.train.seqLen);
  const pipe = pipelineFlagsOf(o, cfg);
  if (pipe?.problems.length) throw new Error(`pipeline flags:\n  - ${pipe.problems.join('\n  - ')}`);
  const pipeline = pipe?.flags ? new PipelineEngine(pipe.flags) : null;
  const par = pipe ? { flags: null, problems: [] } : parseParallelFlags(o.parallel ?? {}, cfg, o.train.batch, o.train.seqLen, o.train.microBatches);
  if (par.problems.length) throw new Error(`--parallel:\n  - ${par.problems.join('\n  - ')}`);
  const engine = par.flags ? new ParallelEngine(cfg, par.flags, o.train.batch * o.train.microBatches, o.train.seqLen, o.train.microBatches, o.train.seed, o.train.adamw, model as MoEGPT) : null;
  const trainer = new Trainer(model, ds, o.train, fpt, peak.flops, cfg.moe.topk, engine, Boolean(o.traceLoads), pipeline);
  if (ck) { applyCheckpoint(ck, trainer, cfg); log(`resumed from ${ck.dir} at step ${trainer.step}`); }
  const counts = countParams(cfg);
  const run: RunSpec = { preset: o.preset, data: o.data, tokenizer: o.tokenizer, backend: o.backend, model: 'moe', ...(par.flags ? { parallel: par.flags.layout } : {}) };
  const ckDir = join(outDir, 'checkpoint');
  log(`training ${cfg.name} (${(counts.total / 1e6).toFixed(2)}M params, ${(counts.activated / 1e6).toFixed(2)}M activated) on ${o.data} ` +
    `[${ds.tokenizer.kind}, vocab ${ds.tokenizer.vocabSize}], ${o.train.steps} steps × ${o.train.microBatches}×${o.train.batch}×${o.train.seqLen} tokens, backend ${o.backend}, out ${outDir}` +
    (par.flags ? `\n  parallel ${par.flags.layout} (world ${engine!.pm.layout.world}) on simulated ${par.flags.device}, dispatcher ${par.flags.dispatcher}` +
      `${par.flags.distributedOptimizer ? ', distributed optimizer' : ''}${par.flags.placement ? `, dynamic placement ${par.flags.placement.solver} every ${par.flags.placement.period} steps` : ''}` : '') +
    (pipe?.flags ? `\n  pipeline pp=${pipe.flags.pp} vpp=${pipe.flags.vpp} ${pipe.flags.schedule} on simulated ${pipe.flags.device}, ` +
      (pipe.flags.memoryBudget !== undefined ? `memory budget ${(pipe.flags.memoryBudget / 2 ** 20).toFixed(1)} MiB of saved activations per device (planner)` : `recompute ${pipe.flags.recompute}, swap ${pipe.flags.swap}`) : ''));

  const bar = o.progress === 'bar'
    ? new cliProgress.SingleBar({ format: 'train |{bar}| {value}/{total} | loss {loss} | val {val} | {tps} tok/s | ETA {eta_formatted}', hideCursor: true }, cliProgress.Presets.shades_classic)
    : null;
  bar?.start(o.train.steps, trainer.step, { loss: '-', val: '-', tps: '-' });
  const every = Math.max(1, Math.round(o.train.steps / 20));
  let lastVal = NaN;
  try {
    while (trainer.step < o.train.steps) {
      const r = pipeline ? await trainer.trainStepAsync() : trainer.trainStep();
      if (r.valLoss !== null) lastVal = r.valLoss;
      if (bar) bar.update(r.step, { loss: r.lmLoss.toFixed(3), val: Number.isNaN(lastVal) ? '-' : lastVal.toFixed(3), tps: Math.round(r.tokensPerSecond) });
      else if (o.progress === 'lines' && (r.step % every === 0 || r.step === o.train.steps || r.valLoss !== null))
        log(`step ${r.step}/${o.train.steps} loss ${r.lmLoss.toFixed(4)}${r.valLoss !== null ? ` val ${r.valLoss.toFixed(4)}` : ''} lr ${r.lr.toExponential(2)} ` +
          `gnorm ${r.gradNorm.toFixed(3)} ${Math.round(r.tokensPerSecond)} tok/s mfu ${(100 * r.localMfu).toFixed(2)}% load max/mean ${r.expertLoadMaxOverMean.toFixed(2)}`);
      if (o.checkpointEvery > 0 && r.step % o.checkpointEvery === 0 && r.step < o.train.steps) await saveCheckpoint(ckDir, trainer, cfg, run);
    }
  } finally { bar?.stop(); }

  const valLoss = trainer.evaluate();
  if (trainer.rows.length) trainer.rows[trainer.rows.length - 1].valLoss = valLoss;
  await saveCheckpoint(ckDir, trainer, cfg, run);
  const rows = trainer.rows;
  const exact = ds.valProblems ? arithExactMatch(model, ds.tokenizer, ds.valProblems.slice(0, 500), Math.min(cfg.maxSeqLen, o.train.seqLen)) : null;
  const steady = rows.slice(1); // the first step includes kernel warm-up
  const ps = engine ? parallelSummary(engine, rows) : undefined;
  if (engine && par.flags?.trace) { mkdirSync(dirname(resolve(par.flags.trace)), { recursive: true }); writeFileSync(par.flags.trace, JSON.stringify(engine.cluster.trace())); }
  let pls: PipelineRunSummary | undefined, gantt = '';
  if (pipeline) {
    const ganttPath = join(outDir, 'pipeline-gantt.svg');
    gantt = await pipeline.ganttSvg();
    writeFileSync(ganttPath, gantt);
    const trace = pipeline.last?.trace ?? pipeline.stagesTrace();
    if (pipeline.flags.trace && trace) { mkdirSync(dirname(resolve(pipeline.flags.trace)), { recursive: true }); writeFileSync(pipeline.flags.trace, JSON.stringify(trace)); }
    pls = pipeline.summary({ gantt: ganttPath, trace: pipeline.flags.trace ? resolve(pipeline.flags.trace) : null });
  }
  if (o.traceLoads && trainer.loadTrace) {
    mkdirSync(dirname(resolve(o.traceLoads)), { recursive: true });
    writeFileSync(o.traceLoads, JSON.stringify(loadTraceJSON(trainer.loadTrace, cfg, o.train, { run: outDir, preset: o.preset, data: o.data, parallel: par.flags?.layout ?? null })));
  }
  const summary: RunSummary = {
    steps: trainer.step,
    lossStart: rows[0]?.lmLoss ?? NaN,
    lossEnd: mean(rows.slice(-10).map((r) => r.lmLoss)),
    valLoss,
    uniformLoss: Math.log(cfg.vocabSize),
    valLossBelowUniform: 1 - valLoss / Math.log(cfg.vocabSize),
    tokensPerSecond: mean((steady.length ? steady : rows).map((r) => r.tokensPerSecond)),
    localMfu: mean((steady.length ? steady : rows).map((r) => r.localMfu)),
    expertLoadMaxOverMean: mean(rows.slice(-10).map((r) => r.expertLoadMaxOverMean)),
    exactMatch: exact ? exact.accuracy : null,
    ...(ps ? { perDevicePeakMemoryBytes: ps.perDevicePeakMemoryBytes, commBytes: ps.commBytes, simulatedStepSeconds: ps.simulatedStepSeconds, parallel: ps } : {}),
    ...(pls ? { perDevicePeakMemoryBytes: pls.perDevicePeakMemoryBytes, simulatedStepSeconds: pls.simulatedStepSeconds, bubbleFraction: pls.bubbleFraction, pipeline: pls } : {}),
    ...(o.traceLoads ? { loadTrace: resolve(o.traceLoads) } : {}),
    params: counts.total, activatedParams: counts.activated, flopsPerToken: fpt, peakGflops: peak.flops / 1e9,
    seconds: (performance.now() - t0) / 1000,
    outDir, report: join(outDir, 'report.html'), checkpoint: ckDir, metricsCsv: join(outDir, 'metrics.csv'),
  };
  saveMetrics(rows, summary.metricsCsv, join(outDir, 'metrics.json'));
  const { parallel: _p, pipeline: _q, perDevicePeakMemoryBytes: _m, commBytes: _c, ...flatSummary } = summary;
  await writeReport(summary.report, {
    title: `ultramoe ${cfg.name} on ${o.data}${par.flags ? ` (${par.flags.layout}, simulated ${par.flags.device})` : ''}${pls ? ` (pp=${pls.pp} vpp=${pls.vpp} ${pls.schedule}, simulated ${pls.device})` : ''}`, rows, loads: trainer.loads,
    summary: { ...flatSummary, peak, ...(ps ? { commBytesTotal: ps.commBytes.total, commBytesByKind: ps.commBytes.byKind, placement: ps.placement } : {}) },
    tables: ps && engine ? parallelTables(ps, engine) : pls ? pipelineTables(pls) : [],
    figures: gantt ? [{ caption: 'Pipeline Gantt chart of the last step (executed simulated timeline: F, B, R, swap, p2p per rank and stream)', svg: gantt }] : [],
  });
  if (exact) log(`arithmetic exact match on ${exact.total} held-out problems: ${(100 * exact.accuracy).toFixed(1)}%  e.g. ` +
    exact.examples.slice(0, 3).map((e) => `${e.prompt}${e.got}${e.got === e.want ? '' : ` (want ${e.want})`}`).join('  '));
  trainer.dispose(); engine?.dispose(); model.dispose();
  return summary;
}

export { defaultTrainConfig };
