// ultramoe vs PyTorch, side by side in one run (issue 9 item 3). From the same initial weights and
// the same batches, trains N steps with our trainer (src/train Trainer: AdamW, clipping, LR schedule)
// on wasm+openblas and on pure wasm, and with bench/torch/ultramoe_torch.py (a PyTorch twin of the
// model and trainer, torch autograd for every backward), then reports tokens/s, the ratio, achieved
// model GFLOP/s and local MFU (model FLOPs / 156.5 GFLOP/s: 2 Zen3 cores × 2 FMA × 8 lanes × 2 ×
// 2.445 GHz, tfjs-notes §1), peak RSS, and checks that both reach the same loss (1e-4 relative).
//
//   npx tsx bench/vs-torch.ts [--preset tiny|small] [--steps N] [--batch B] [--seq S] [--seed K]
//       [--lr 3e-3] [--gemm openblas,wasm] [--experts loop|bmm] [--torch-threads 1] [--python /usr/bin/python3 (env ULTRAMOE_TORCH_PYTHON)]
//       [--gemm none]           torch only
//       [--torch-blas-threads auto|1|2]  OpenBLAS threads of torch (auto: both, the faster is compared)
//       [--ours-blas-threads auto|1|2]   the same for our wasm+openblas column (2 = the backend's policy:
//                                        1 or 2 threads per GEMM size class, measured: src/backend/blas-threads.ts)
//       [--profile]             our side: per-module wall time and top kernels of one extra step
//       [--quick]               3 steps
//       [--keep]                 keep the run directory (weights, batches, config) for debugging
//   npm run bench -- --only vs-torch [--preset small]   (bench/run.ts runs every bench file)
// → bench/results/vs-torch-<preset>.json
//
// Each configuration runs in its own process (clean peak RSS, no shared heap); the processes are
// alive together and run in lockstep (step i of each in turn, one at a time), so that bursts of
// outside load on the shared 2-core machine hit every column alike. Torch comes from Debian's
// python3-torch (importable only from /usr/bin/python3); without it the torch column is skipped
// with the install command. Torch runs with 1 intra-op thread (2 oversubscribe the cores,
// tfjs-notes §2) and OpenBLAS with 2 and with 1 thread; the faster is compared (which one wins
// depends on the preset and on the machine's load). Also checked, as an independent test of our
// hand-written backward: the first-step loss and every parameter's gradient at the initial weights.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tf, initBackend, backendLabel, backendDescription } from '../src/backend/tf.ts';
import { blasThreadTuner } from '../src/backend/openblas.ts';
import { resolveConfig, type ModelConfig } from '../src/model/config.ts';
import { MoEGPT } from '../src/model/gpt.ts';
import { modelFlopsPerTokenBreakdown } from '../src/model/flops-local.ts';
import { encodeSafetensors, decodeSafetensors, type HostTensor } from '../src/train/safetensors.ts';
import { loadDataset, BatchSampler, type Batch, type Dataset } from '../src/train/data.ts';
import { Trainer, defaultTrainConfig, type TrainConfig } from '../src/train/trainer.ts';
import { lossNumbers } from '../src/train/model.ts';
import { globalGradNorm } from '../src/train/optimizer.ts';
import { GradStore, defaultContext } from '../src/model/module.ts';

export const PEAK_FLOPS_2CORE = 156.5e9;
/** Debian's python3-torch is importable only from the system interpreter; env ULTRAMOE_TORCH_PYTHON overrides. */
export const DEFAULT_PYTHON = process.env.ULTRAMOE_TORCH_PYTHON ?? '/usr/bin/python3';
const TOLERANCE = 1e-4;
const here = fileURLToPath(new URL('.', import.meta.url));
const root = join(here, '..');

const argv = process.argv.slice(2);
const has = (k: string) => argv.includes(`--${k}`);
const arg = (k: string, d: string) => (has(k) ? argv[argv.indexOf(`--${k}`) + 1] : d);

export interface StepOut { loss: number; lmLoss: number; auxLoss: number; zLoss: number; gradNorm: number; lr: number; stepMs: number; cpuMs: number; fwdBwdMs: number; optMs?: number }
export interface SideOut {
  impl: string; rows: StepOut[]; losses: number[]; evalLmLoss: number; medianStepMs: number; tokensPerSec: number;
  gflops: number; peakRssMb: number; loadAvgBefore?: number; loadAvgAfter?: number; bestStepMs?: number; [k: string]: unknown;
}

const median = (v: number[]) => v.slice().sort((a, b) => a - b)[v.length >> 1];

// ---------------------------------------------------------------- worker: our side, one GEMM provider

async function worker(dir: string, gemm: 'openblas' | 'wasm'): Promise<void> {
  await initBackend('wasm', { gemm });
  // lockstep: the orchestrator sends one line per step ('step') and one to finish ('finish'), so
  // that the processes being compared take turns step by step (load on the shared machine hits all)
  let gate: (() => Promise<void>) | undefined;
  if (has('lockstep')) {
    const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
    gate = async () => { const l = await lines.next(); if (l.done) throw new Error('lockstep: stdin closed'); };
  }
  const out = await trainOurs(dir, {
    dumpGrads: has('dump-grads') ? `grads-${gemm}.safetensors` : null, profile: has('profile'), gate,
    onReady: () => console.log(JSON.stringify({ ready: true, impl: backendLabel(), description: backendDescription() })), onStep: (row) => console.log(JSON.stringify({ stepDone: row })),
  });
  console.log(JSON.stringify(out));
}

/**
 * Our side on a run directory, in this process (the backend must be initialised): load the weights,
 * optionally dump the gradients of batch 0 at the initial weights to `dumpGrads` (a file name in
 * `dir`), train on every batch but the last with src/train's Trainer, evaluate the last.
 */
export async function trainOurs(dir: string, opts: {
  dumpGrads?: string | null; profile?: boolean;
  /** Awaited before each step and before the final evaluation (lockstep with other processes). */
  gate?: () => Promise<void>; onReady?: () => void; onStep?: (row: StepOut) => void;
} = {}): Promise<SideOut> {
  const run = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  const cfg: ModelConfig = run.model, tc: TrainConfig = run.train;
  const model = new MoEGPT(cfg, 1);
  const w = decodeSafetensors(readFileSync(join(dir, 'weights.safetensors')), 'weights.safetensors');
  for (const [n, v] of model.params.vars) {
    const t = w.tensors.get(n);
    if (!t) throw new Error(`weights.safetensors has no '${n}'`);
    tf.tidy(() => v.assign(tf.tensor(t.data, t.shape, 'float32')));
  }
  const bt = decodeSafetensors(readFileSync(join(dir, 'batches.safetensors')), 'batches.safetensors').tensors;
  const tok = bt.get('tokens')!, tgt = bt.get('targets')!;
  const [nb, B, S] = tok.shape, per = B * S;
  const batch = (i: number): Batch => ({ tokens: (tok.data as Int32Array).slice(i * per, (i + 1) * per), targets: (tgt.data as Int32Array).slice(i * per, (i + 1) * per), batch: B, seqLen: S });
  const steps = nb - 1; // the last batch is the evaluation batch
  // gradients of batch 0 at the initial weights (one untimed forward+backward, no side effects)
  if (opts.dumpGrads) {
    const g = new GradStore(), b0 = batch(0);
    model.forwardBackward(b0.tokens, b0.targets, B, S, defaultContext({ training: true, lossScale: 1, seed: 1, recordStats: false }), g);
    const host = new Map<string, HostTensor>();
    for (const n of model.params.names()) {
      const t = g.get(n);
      host.set(n, { dtype: 'F32', shape: model.params.get(n).shape, data: t ? (t.dataSync() as Float32Array) : new Float32Array(model.params.get(n).size) });
    }
    g.dispose();
    writeFileSync(join(dir, opts.dumpGrads), encodeSafetensors(host));
  }
  // The trainer's own dataset is a stub: its sampler is replaced by the batches file.
  const ds: Dataset = { name: 'vs-torch', tokenizer: undefined as never, train: tok.data as Int32Array, val: tok.data as Int32Array };
  const trainer = new Trainer(model, ds, tc, run.flopsPerToken, PEAK_FLOPS_2CORE, cfg.moe.topk);
  let next = 0;
  (trainer.sampler as unknown as { next: () => Batch }).next = () => batch(next++);
  // phase timers: forward+backward and the optimizer update (the rest is the grad norm and bookkeeping)
  const phase = { fwdBwd: 0, opt: 0 };
  const timed = <T extends object>(obj: T, fn: keyof T, key: keyof typeof phase) => {
    const orig = (obj[fn] as unknown as (...a: unknown[]) => unknown).bind(obj);
    (obj as Record<string, unknown>)[fn as string] = (...a: unknown[]) => { const t0 = performance.now(); try { return orig(...a); } finally { phase[key] += performance.now() - t0; } };
  };
  timed(model, 'forwardBackward', 'fwdBwd');
  timed(trainer.opt, 'step', 'opt');
  const rows: StepOut[] = [];
  opts.onReady?.();
  for (let i = 0; i < steps; i++) {
    await opts.gate?.();
    const c0 = process.cpuUsage();
    phase.fwdBwd = phase.opt = 0;
    const r = trainer.trainStep();
    const c = process.cpuUsage(c0);
    rows.push({ loss: r.loss, lmLoss: r.lmLoss, auxLoss: r.auxLoss, zLoss: r.zLoss, gradNorm: r.gradNorm, lr: r.lr, stepMs: r.stepSeconds * 1e3,
      cpuMs: (c.user + c.system) / 1e3, fwdBwdMs: phase.fwdBwd, optMs: phase.opt });
    opts.onStep?.(rows[rows.length - 1]);
  }
  await opts.gate?.();
  const profile = opts.profile ? await profileStep(model, batch(0)) : undefined;
  const ev = batch(steps);
  const evalLmLoss = lossNumbers(model.forwardLoss(ev.tokens, ev.targets, B, S)).lmLoss;
  const med = median((rows.length > 1 ? rows.slice(1) : rows).map((r) => r.stepMs));
  const tps = per / (med / 1e3);
  const out: SideOut = {
    impl: backendLabel(), description: backendDescription(), rows, losses: rows.map((r) => r.loss), evalLmLoss,
    medianStepMs: med, tokensPerSec: tps, gflops: (run.flopsPerToken * tps) / 1e9,
    peakRssMb: process.resourceUsage().maxRSS / 1024, profile,
    ...(blasThreadTuner && backendLabel() === 'wasm+openblas' ? { blasThreadChoices: blasThreadTuner.summary() } : {}),
  };
  trainer.dispose();
  model.dispose();
  return out;
}

/** One extra forward+backward (after training) with wall time per module kind and tf.profile's kernels. */
async function profileStep(model: MoEGPT, b: Batch) {
  const ms = new Map<string, number>();
  const wrap = (obj: Record<string, unknown>, kind: string) => {
    for (const fn of ['forward', 'backward', 'loss']) {
      if (typeof obj[fn] !== 'function') continue;
      const orig = obj[fn] as (...a: unknown[]) => unknown;
      obj[fn] = (...a: unknown[]) => {
        const t0 = performance.now();
        try { return orig.apply(obj, a); } finally { const k = `${kind}.${fn}`; ms.set(k, (ms.get(k) ?? 0) + performance.now() - t0); }
      };
    }
  };
  for (const blk of model.blocks) {
    if (blk.moe) {
      const m = blk.moe as unknown as { router: Record<string, unknown>; experts: Record<string, unknown>; shared: Record<string, unknown> | null };
      wrap(m.router, 'moe.router'); wrap(m.experts, 'moe.experts'); if (m.shared) wrap(m.shared, 'moe.shared');
    }
    for (const n of [blk.attnNorm, blk.attnPostNorm, blk.mlpNorm, blk.mlpPostNorm]) if (n) wrap(n as never, 'norm');
    wrap(blk.attn as never, 'attention'); wrap(blk.ffn as never, blk.moe ? 'moe' : 'mlp');
  }
  wrap(model.head as never, 'head'); wrap(model.embedding as never, 'embedding');
  const g = new GradStore();
  const t0 = performance.now();
  const info = await tf.profile(() => { model.forwardBackward(b.tokens, b.targets, b.batch, b.seqLen, defaultContext({ recordStats: false }), g); });
  const total = performance.now() - t0;
  const n0 = performance.now();
  globalGradNorm(g);
  const gradNormMs = performance.now() - n0;
  g.dispose();
  const agg = new Map<string, { count: number; ms: number }>();
  for (const k of info.kernels) {
    const e = agg.get(k.name) ?? { count: 0, ms: 0 };
    e.count++; e.ms += typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
    agg.set(k.name, e);
  }
  const kernels = [...agg].map(([name, e]) => ({ name, count: e.count, ms: +e.ms.toFixed(1) })).sort((x, y) => y.ms - x.ms);
  return {
    note: 'one fwd+bwd under tf.profile (adds overhead); module times are inclusive wall ms (moe includes moe.router/experts/shared)',
    totalMs: +total.toFixed(1), gradNormMs: +gradNormMs.toFixed(1), kernelMs: +kernels.reduce((a, k) => a + k.ms, 0).toFixed(1), kernelCount: info.kernels.length,
    moduleMs: Object.fromEntries([...ms].map(([k, v]): [string, number] => [k, +v.toFixed(1)]).sort((x, y) => y[1] - x[1])), topKernels: kernels.slice(0, 20),
  };
}

// ---------------------------------------------------------------- orchestrator

/**
 * Write a run directory for bench/torch/ultramoe_torch.py (and our workers): config.json, the initial
 * weights of MoEGPT(cfg, tc.seed) and steps+1 batches of tc.batch × tc.seqLen from the shipped corpus
 * (the last one is the evaluation batch). Needs an initialised backend. Returns the parameter count.
 */
export function writeRunDir(dir: string, cfg: ModelConfig, tc: TrainConfig, steps: number): number {
  const B = tc.batch, S = tc.seqLen;
  const model = new MoEGPT(cfg, tc.seed);
  const weights = new Map<string, HostTensor>();
  const decay: Record<string, boolean> = {};
  for (const [n, v] of model.params.vars) {
    weights.set(n, { dtype: 'F32', shape: v.shape, data: v.dataSync() as Float32Array });
    decay[n] = !!model.params.meta.get(n)?.decay;
  }
  const numel = model.params.numel();
  model.dispose();
  writeFileSync(join(dir, 'weights.safetensors'), encodeSafetensors(weights, { format: 'pt', producer: 'ultramoe' }));
  const ds = loadDataset('text', 'byte', tc.seed);
  const sampler = new BatchSampler(ds.train, B, S, tc.seed);
  const tokens = new Int32Array((steps + 1) * B * S), targets = new Int32Array((steps + 1) * B * S);
  for (let i = 0; i <= steps; i++) { const b = sampler.next(); tokens.set(b.tokens, i * B * S); targets.set(b.targets, i * B * S); }
  writeFileSync(join(dir, 'batches.safetensors'), encodeSafetensors(new Map([
    ['tokens', { dtype: 'I32', shape: [steps + 1, B, S], data: tokens }],
    ['targets', { dtype: 'I32', shape: [steps + 1, B, S], data: targets }],
  ])));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ model: cfg, train: tc, flopsPerToken: modelFlopsPerTokenBreakdown(cfg, S).total, decay }));
  return numel;
}

/** Run the torch twin on a run directory; returns its JSON (or throws with its stderr). */
export function runTorchTwin(dir: string, opts: { python?: string; blasThreads?: string; torchThreads?: string; experts?: string; dumpGrads?: boolean; steps?: number } = {}): SideOut {
  const env = { ...process.env, OPENBLAS_NUM_THREADS: opts.blasThreads ?? '1', OMP_NUM_THREADS: opts.torchThreads ?? '1' };
  const r = spawnSync(opts.python ?? DEFAULT_PYTHON, [join(here, 'torch', 'ultramoe_torch.py'), '--run-dir', dir, '--experts', opts.experts ?? 'loop',
    '--torch-threads', opts.torchThreads ?? '1', ...(opts.dumpGrads ? ['--dump-grads'] : []), ...(opts.steps ? ['--steps', String(opts.steps)] : [])],
  { cwd: root, encoding: 'utf8', env, maxBuffer: 64 << 20 });
  const out = lastJson(r.stdout ?? '') as SideOut | null;
  if (r.status !== 0 || !out || 'error' in out) throw new Error(`torch twin failed (exit ${r.status}): ${out && 'error' in out ? out.error : ''}\n${r.stderr}`);
  return out;
}

function lastJson(stdout: string): Record<string, unknown> | null {
  const lines = stdout.trim().split('\n').reverse();
  for (const l of lines) { try { return JSON.parse(l); } catch { /* not JSON */ } }
  return null;
}

/** A child process driven line by line (the lockstep protocol of the workers and the torch twin). */
class Lockstep {
  private readonly child: ChildProcess;
  private readonly queue: string[] = [];
  private readonly waiters: ((l: string | null) => void)[] = [];
  private closed = false;
  private readonly exit: Promise<number | null>;

  constructor(cmd: string, args: string[], env: NodeJS.ProcessEnv) {
    this.child = spawn(cmd, args, { cwd: root, env, stdio: ['pipe', 'pipe', 'inherit'] });
    this.exit = new Promise((res) => this.child.on('exit', (code) => res(code)));
    const rl = createInterface({ input: this.child.stdout! });
    rl.on('line', (l) => { const w = this.waiters.shift(); if (w) w(l); else this.queue.push(l); });
    rl.on('close', () => { this.closed = true; for (const w of this.waiters.splice(0)) w(null); });
  }

  /** The next JSON line that satisfies `pred` (other output is skipped); throws if the process ends first. */
  async nextJson(pred: (o: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
    for (;;) {
      const l = this.queue.length ? this.queue.shift()! : this.closed ? null : await new Promise<string | null>((r) => this.waiters.push(r));
      if (l === null) throw new Error(`process exited (code ${await this.exit})`);
      let o: unknown;
      try { o = JSON.parse(l); } catch { continue; }
      if (o && typeof o === 'object' && 'error' in o) throw new Error(String((o as { error: unknown }).error));
      if (o && typeof o === 'object' && pred(o as Record<string, unknown>)) return o as Record<string, unknown>;
    }
  }

  send(line: string): void { this.child.stdin!.write(line + '\n'); }
  exited(): Promise<number | null> { this.child.stdin!.end(); return this.exit; }
  kill(): void { if (this.child.exitCode === null) this.child.kill(); }
}

export function pythonTorch(python = DEFAULT_PYTHON): { ok: true; version: string } | { ok: false; why: string } {
  if (!existsSync(python)) return { ok: false, why: `${python} not found` };
  const r = spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
  if (r.status !== 0) return { ok: false, why: `torch is not importable from ${python} (${(r.stderr || '').trim().split('\n').pop()})` };
  return { ok: true, version: r.stdout.trim() };
}

export const TORCH_HINT = 'install Debian\'s PyTorch and OpenBLAS: `apt-get update && apt-get install -y python3-torch libopenblas0-pthread` (it is importable only from /usr/bin/python3)';

async function main(): Promise<void> {
  const preset = arg('preset', 'tiny');
  const quick = has('quick');
  const steps = Number(arg('steps', quick ? '3' : '5'));
  const B = Number(arg('batch', '8')), S = Number(arg('seq', '128'));
  const seed = Number(arg('seed', '1'));
  const python = arg('python', DEFAULT_PYTHON);
  const cfg = resolveConfig(preset);
  const tc: TrainConfig = defaultTrainConfig({ steps, batch: B, seqLen: S, microBatches: 1, lr: Number(arg('lr', '3e-3')), seed, evalEvery: 0 });
  const fl = modelFlopsPerTokenBreakdown(cfg, S);
  const dir = mkdtempSync(join(tmpdir(), `ultramoe-vs-torch-${preset}-`));

  // 1. initial weights (seeded init, as `ultramoe train` builds them) and N+1 batches of the shipped corpus
  await initBackend('wasm', { gemm: 'wasm' });
  const numel = writeRunDir(dir, cfg, tc, steps);
  console.log(`vs-torch: preset ${preset}, ${(numel / 1e6).toFixed(2)}M params, B=${B} S=${S}, ${steps} steps (+1 eval batch), ` +
    `${(fl.total / 1e6).toFixed(2)} MFLOP/token (fwd+bwd), run dir ${dir}`);

  // 2-3. our side (one process per GEMM provider) and torch (one process per OpenBLAS thread count),
  // all alive at once and run in lockstep: step i of every process, one process at a time, then
  // step i+1 (the machine is shared: a burst of outside load then hits every column, not one).
  const gemms = arg('gemm', 'openblas,wasm').split(',').filter((g) => g === 'openblas' || g === 'wasm') as ('openblas' | 'wasm')[]; // --gemm none: torch only
  let torchSkipped: string | null = null;
  const pt = pythonTorch(python);
  if (!pt.ok) { torchSkipped = `${pt.why}; ${TORCH_HINT}`; console.log(`  torch: skipped: ${torchSkipped}`); }
  // torch: 1 intra-op thread; OpenBLAS with 2 and 1 threads unless OPENBLAS_NUM_THREADS / --torch-blas-threads fix it
  const threads = arg('torch-threads', '1');
  const blasArg = process.env.OPENBLAS_NUM_THREADS ?? arg('torch-blas-threads', 'auto');
  const blasChoices = pt.ok ? (blasArg === 'auto' ? ['2', '1'] : [blasArg]) : [];
  const procs: { label: string; kind: 'ours' | 'torch'; p: Lockstep }[] = [];
  const start = async (label: string, kind: 'ours' | 'torch', p: Lockstep) => {
    try {
      const ready = await p.nextJson((o) => 'ready' in o);
      if (label.startsWith('openblas') && ready.impl !== 'wasm+openblas') {
        console.log(`  (OpenBLAS unavailable: ${ready.description}; no wasm+openblas column)`);
        p.kill();
        return;
      }
      procs.push({ label, kind, p });
    } catch (e) { console.error(`vs-torch: ${label} failed to start: ${(e as Error).message}`); process.exitCode = 1; p.kill(); }
  };
  // ours with OpenBLAS: the backend's policy (up to 2 threads, chosen per GEMM size class from measured speed) and, like torch, 1 thread
  const oursBlas = arg('ours-blas-threads', 'auto') === 'auto' ? ['2', '1'] : [arg('ours-blas-threads', '2')];
  for (const g of gemms) {
    for (const [i, bt] of (g === 'openblas' ? oursBlas : ['']).entries()) {
      const label = g === 'openblas' ? `openblas${bt}` : g;
      if (g === 'openblas' && i > 0 && !procs.some((q) => q.label.startsWith('openblas'))) continue; // OpenBLAS unavailable
      await start(label, 'ours', new Lockstep(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--worker', dir, '--gemm', g, '--lockstep',
        ...(i === 0 ? ['--dump-grads'] : []), ...(has('profile') && i === 0 ? ['--profile'] : [])],
      { ...process.env, ...(bt ? { OPENBLAS_NUM_THREADS: bt } : {}) }));
    }
  }
  for (const [i, blas] of blasChoices.entries()) {
    await start(`torch-blas${blas}`, 'torch', new Lockstep(python, [join(here, 'torch', 'ultramoe_torch.py'), '--run-dir', dir, '--experts', arg('experts', 'loop'),
      '--torch-threads', threads, '--lockstep', ...(i === 0 ? ['--dump-grads'] : [])], { ...process.env, OPENBLAS_NUM_THREADS: blas, OMP_NUM_THREADS: threads }));
  }
  const la0 = loadavg()[0];
  const failed = new Set<string>();
  for (let i = 0; i < steps; i++) {
    for (const q of procs) {
      if (failed.has(q.label)) continue;
      try { q.p.send('step'); await q.p.nextJson((o) => 'stepDone' in o); } catch (e) { failed.add(q.label); console.error(`vs-torch: ${q.label} failed at step ${i + 1}: ${(e as Error).message}`); process.exitCode = 1; }
    }
  }
  const la1 = loadavg()[0];
  const oursRuns: SideOut[] = [], torchRuns: SideOut[] = [];
  for (const q of procs) {
    if (failed.has(q.label)) { q.p.kill(); continue; }
    try {
      q.p.send('finish');
      const out = await q.p.nextJson((o) => 'losses' in o) as SideOut;
      await q.p.exited();
      if (q.kind === 'torch') out.impl = q.label;
      else if (q.label.startsWith('openblas')) { out.impl = `wasm+openblas${q.label.slice(8)}`; out.blasThreads = Number(q.label.slice(8)); }
      out.loadAvgBefore = la0; out.loadAvgAfter = la1;
      summarize(out, fl.total, B * S);
      (q.kind === 'ours' ? oursRuns : torchRuns).push(out);
      report(out, fl.total);
      if (out.profile) console.log('  profile:', JSON.stringify(out.profile));
    } catch (e) { console.error(`vs-torch: ${q.label} failed to finish: ${(e as Error).message}`); process.exitCode = 1; q.p.kill(); }
  }
  // one column per GEMM provider: the faster OpenBLAS thread setting (all runs stay in the JSON)
  const fastestOf = (runs: SideOut[]) => runs.slice().sort((x, y) => x.medianStepMs - y.medianStepMs)[0];
  const blasRuns = oursRuns.filter((r) => String(r.impl).startsWith('wasm+openblas'));
  const sides = [...(blasRuns.length ? [fastestOf(blasRuns)] : []), ...oursRuns.filter((r) => r.impl === 'wasm')];
  if (blasRuns.length > 1) console.log(`  ours: comparing with the faster OpenBLAS setting, ${sides[0].impl}`);
  const torch = torchRuns.slice().sort((x, y) => x.medianStepMs - y.medianStepMs)[0] ?? null;
  if (torch) console.log(`  torch: comparing with the faster configuration, ${torch.impl} (torch ${torch.torch}, ${torch.torchThreads} torch thread, OPENBLAS_NUM_THREADS=${torch.openblasThreads})`);

  // 4. comparison. Three checks: (a) the loss after N steps (and at every step) within TOLERANCE
  // (the criterion); (b) strict: the first-step loss within 1e-6 and every parameter's
  // gradient at the initial weights within 1e-5 relative (no chaotic drift yet: a real semantic
  // difference shows here); (c) the noise floor: how far our two GEMM providers drift apart (same
  // code, only the fp32 summation order differs), to judge (a).
  const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);
  const noiseFloor = sides.length === 2 ? {
    between: sides.map((s) => s.impl), evalLossRelDiff: rel(sides[0].evalLmLoss, sides[1].evalLmLoss),
    lossRelDiffPerStep: sides[0].losses.map((l, i) => rel(l, sides[1].losses[i])),
  } : null;
  if (noiseFloor) console.log(`  noise floor (${noiseFloor.between.join(' vs ')}): loss rel diff per step [${noiseFloor.lossRelDiffPerStep.map((x) => x.toExponential(1)).join(', ')}], eval ${noiseFloor.evalLossRelDiff.toExponential(2)}`);
  const comparisons = sides.map((s) => {
    if (!torch) return { ours: s.impl };
    const stepRel = s.losses.map((l, i) => rel(l, torch.losses[i]));
    const gradRel = s.rows.map((r, i) => rel(r.gradNorm, torch.rows[i].gradNorm));
    const evalRel = rel(s.evalLmLoss, torch.evalLmLoss);
    const sameLoss = evalRel <= TOLERANCE && stepRel.every((x) => x <= TOLERANCE);
    const gf = join(dir, `grads-${String(s.impl).startsWith('wasm+openblas') ? 'openblas' : 'wasm'}.safetensors`), gt = join(dir, 'grads-torch.safetensors');
    const grads = existsSync(gf) && existsSync(gt) ? compareGrads(gf, gt) : null;
    const strict = stepRel[0] <= 1e-6 && !!grads && grads.worst.every((w) => w.rel <= 1e-5);
    const c = {
      ours: s.impl, torch: torch.impl, tokensPerSecRatio: s.tokensPerSec / torch.tokensPerSec,
      tokensPerSecRatioBest: Number(s.tokensPerSecBest) / Number(torch.tokensPerSecBest),
      tokensPerCpuSecRatio: Number(s.tokensPerCpuSec) / Number(torch.tokensPerCpuSec),
      lossRelDiffPerStep: stepRel, gradNormRelDiffPerStep: gradRel, evalLossRelDiff: evalRel,
      tolerance: TOLERANCE, sameLoss, strictParity: strict, gradients: grads,
    };
    console.log(`  ${s.impl} / ${torch.impl}: ${c.tokensPerSecRatio.toFixed(3)}× tokens/s (best step: ${c.tokensPerSecRatioBest.toFixed(3)}×, per CPU-second: ${c.tokensPerCpuSecRatio.toFixed(3)}×)`);
    console.log(`    loss rel diff per step [${stepRel.map((x) => x.toExponential(1)).join(', ')}]; grad-norm rel diff [${gradRel.map((x) => x.toExponential(1)).join(', ')}]`);
    console.log(`    eval loss after ${steps} steps ${s.evalLmLoss.toFixed(6)} vs ${torch.evalLmLoss.toFixed(6)} (rel ${evalRel.toExponential(2)}): ${sameLoss ? 'SAME' : 'DIFFERENT'} at ${TOLERANCE}`);
    if (grads) console.log(`    gradients at the initial weights (batch 0): global rel diff ${grads.globalRel.toExponential(2)}, worst ` +
      grads.worst.slice(0, 3).map((w) => `${w.name} ${w.rel.toExponential(1)}`).join(', ') + `; strict parity (step-1 loss 1e-6, every gradient 1e-5): ${strict ? 'PASS' : 'FAIL'}`);
    if (!sameLoss || !strict) process.exitCode = 1;
    return c;
  });

  const result = {
    preset, params: numel, batch: B, seqLen: S, steps, seed, train: tc,
    modelFlopsPerToken: fl.total, peakGflops2Core: PEAK_FLOPS_2CORE / 1e9,
    schedule: 'lockstep: all processes alive, step i of each in turn', ours: sides, torch,
    allRuns: [...oursRuns, ...torchRuns].map((t) => ({ impl: t.impl, medianStepMs: t.medianStepMs, bestStepMs: t.bestStepMs, medianCpuMs: t.medianCpuMs, medianFwdBwdMs: t.medianFwdBwdMs, medianOptMs: t.medianOptMs, tokensPerSec: t.tokensPerSec, peakRssMb: t.peakRssMb, profile: t.profile })),
    torchSkipped, noiseFloor, comparisons, date: new Date().toISOString(),
  };
  mkdirSync(join(root, 'bench', 'results'), { recursive: true });
  const file = join(root, 'bench', 'results', `vs-torch-${preset}.json`);
  writeFileSync(file, JSON.stringify(result, null, 1) + '\n');
  console.log(`  → ${file}`);
  if (!has('keep')) rmSync(dir, { recursive: true, force: true });
}

/** Timing summary over the steps after the first (warm-up): median and best wall time, median CPU time. */
function summarize(s: SideOut, flopsPerToken: number, tokens: number): void {
  // a NaN/Infinity loss arrives as JSON null: keep it NaN (null would count as 0 in the comparisons)
  const num = (x: unknown) => (typeof x === 'number' ? x : NaN);
  s.losses = s.losses.map(num);
  s.evalLmLoss = num(s.evalLmLoss);
  for (const r of s.rows) { r.loss = num(r.loss); r.gradNorm = num(r.gradNorm); }
  const rows = s.rows.length > 1 ? s.rows.slice(1) : s.rows;
  s.medianStepMs = median(rows.map((r) => r.stepMs));
  s.bestStepMs = Math.min(...rows.map((r) => r.stepMs));
  s.medianCpuMs = median(rows.map((r) => r.cpuMs));
  s.medianFwdBwdMs = median(rows.map((r) => r.fwdBwdMs));
  s.medianOptMs = median(rows.map((r) => r.optMs ?? 0));
  s.tokensPerSec = tokens / (s.medianStepMs / 1e3);
  s.tokensPerSecBest = tokens / (s.bestStepMs / 1e3);
  s.tokensPerCpuSec = tokens / ((s.medianCpuMs as number) / 1e3);
  s.gflops = (flopsPerToken * s.tokensPerSec) / 1e9;
  s.localMfu = s.gflops / (PEAK_FLOPS_2CORE / 1e9);
  s.gflopsBest = (flopsPerToken * (s.tokensPerSecBest as number)) / 1e9;
  s.localMfuBest = (s.gflopsBest as number) / (PEAK_FLOPS_2CORE / 1e9);
}

/** ‖a − b‖/‖b‖ per parameter (float64), from two safetensors files of gradients. */
export function compareGrads(oursFile: string, torchFile: string) {
  const a = decodeSafetensors(readFileSync(oursFile)).tensors, b = decodeSafetensors(readFileSync(torchFile)).tensors;
  let dd = 0, bb = 0;
  const per: { name: string; rel: number; norm: number }[] = [];
  for (const [n, tb] of b) {
    const ta = a.get(n);
    if (!ta) throw new Error(`gradient '${n}' missing on our side`);
    let d = 0, q = 0;
    for (let i = 0; i < tb.data.length; i++) { const x = ta.data[i] - tb.data[i]; d += x * x; q += tb.data[i] * tb.data[i]; }
    dd += d; bb += q;
    per.push({ name: n, rel: Math.sqrt(d / Math.max(q, 1e-300)), norm: Math.sqrt(q) });
  }
  per.sort((x, y) => y.rel - x.rel);
  return { globalRel: Math.sqrt(dd / bb), worst: per.slice(0, 8), params: per.length };
}

function report(s: SideOut, flopsPerToken: number): void {
  const n = (v: unknown, d = 0) => Number(v).toFixed(d);
  console.log(`  ${String(s.impl).padEnd(14)} median ${n(s.medianStepMs).padStart(5)} ms/step (best ${n(s.bestStepMs)}, CPU ${n(s.medianCpuMs)}; fwd+bwd ${n(s.medianFwdBwdMs)}, AdamW ${n(s.medianOptMs)})  ` +
    `${n(s.tokensPerSec).padStart(5)} tok/s (best ${n(s.tokensPerSecBest)})  ${n(s.gflops, 2)} GFLOP/s (best ${n(s.gflopsBest, 2)})  MFU ${n(100 * Number(s.localMfu), 2)}% (best ${n(100 * Number(s.localMfuBest), 2)}%)  ` +
    `peak RSS ${n(s.peakRssMb)} MB  load ${n(s.loadAvgBefore, 1)}→${n(s.loadAvgAfter, 1)}`);
  console.log(`  ${''.padEnd(14)} losses [${s.losses.map((l) => (Number.isFinite(l) ? l.toFixed(5) : String(l))).join(', ')}]  (${(flopsPerToken / 1e6).toFixed(2)} MFLOP/token)`);
}

const isMain = process.argv[1] !== undefined && fileURLToPath(import.meta.url) === resolve(process.argv[1]);
if (isMain && has('worker')) {
  worker(arg('worker', ''), arg('gemm', 'openblas') as 'openblas' | 'wasm').catch((e) => { console.error(e instanceof Error ? e.stack : e); process.exit(1); });
} else if (isMain) {
  main().catch((e) => { console.error(e instanceof Error ? e.stack : e); process.exit(1); });
}
