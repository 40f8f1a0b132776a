// Model benchmark: forward+backward of a preset (default tiny, batch 8 × 128 tokens) on wasm and
// cpu: time per step, tokens/s, achieved GFLOP/s of model FLOPs (Megatron convention,
// src/model/flops-local.ts), wall and process-CPU time (the 2-core machine is shared), a dense
// reference GEMM on the same backend, CPU time and tfjs kernel count per module kind (kernels per MoE
// layer: `kernelsPerMoELayer`) and the top kernels (tf.profile).
// Usage: npx tsx bench/model.ts [--backend wasm|cpu] [--preset tiny] [--batch 8] [--seq 128]
//        [--steps N] [--quick] [--no-profile] [--gemm auto|wasm|openblas]
//        → bench/results/model-<backend>.json (model-wasm-gemm-<g>.json with --gemm)
import { writeFileSync, mkdirSync } from 'node:fs';
import { loadavg } from 'node:os';
import { tf, initBackend, backendLabel, type BackendName } from '../src/backend/tf.ts';
import { resolveConfig } from '../src/model/config.ts';
import { MoEGPT } from '../src/model/gpt.ts';
import { GradStore, defaultContext } from '../src/model/module.ts';
import { modelFlopsPerTokenBreakdown } from '../src/model/flops-local.ts';

const argv = process.argv.slice(2);
const arg = (k: string, d: string) => (argv.includes(`--${k}`) ? argv[argv.indexOf(`--${k}`) + 1] : d);
const quick = argv.includes('--quick');
const backends = (argv.includes('--backend') ? [arg('backend', 'wasm')] : ['wasm', 'cpu']) as BackendName[];
const preset = arg('preset', 'tiny');
const B = Number(arg('batch', '8')), S = Number(arg('seq', '128'));

/** GFLOP/s per CPU-second of a square 2-D matMul (the dense reference). */
function denseGemm(n: number, reps: number): number {
  const a = tf.randomNormal([n, n], 0, 1, 'float32', 1), b = tf.randomNormal([n, n], 0, 1, 'float32', 2);
  tf.matMul(a, b).dispose();
  const c0 = process.cpuUsage();
  for (let i = 0; i < reps; i++) { const c = tf.matMul(a, b); c.dataSync(); c.dispose(); }
  const cu = process.cpuUsage(c0), ms = (cu.user + cu.system) / 1000 / reps; // CPU time (shared machine)
  tf.dispose([a, b]);
  return (2 * n ** 3) / ms / 1e6;
}

/** Wrap forward/backward of every sub-module to accumulate process CPU time by kind (ops are
 *  synchronous; CPU time rather than wall time because the 2-core machine is shared). */
function instrument(model: MoEGPT, times: Map<string, number>, kernelCounts: Map<string, number>): void {
  // kernels dispatched so far in the active tf.profile (0 outside a profile)
  const dispatched = () => (tf.engine().state as unknown as { activeProfile?: { kernels: unknown[] } }).activeProfile?.kernels.length ?? 0;
  const wrap = (obj: Record<string, unknown>, kind: string) => {
    // backwardAdd: RMSNorm's backward with the residual add folded in (counted as its backward)
    for (const fn of ['forward', 'backward', 'backwardAdd', 'loss']) {
      if (typeof obj[fn] !== 'function') continue;
      const orig = obj[fn] as (...a: unknown[]) => unknown;
      obj[fn] = (...a: unknown[]) => {
        const c0 = process.cpuUsage(), k0 = dispatched();
        try { return orig.apply(obj, a); } finally {
          const c = process.cpuUsage(c0), key = `${kind}.${fn === 'backwardAdd' ? 'backward' : fn}`;
          times.set(key, (times.get(key) ?? 0) + (c.user + c.system) / 1000);
          kernelCounts.set(key, (kernelCounts.get(key) ?? 0) + dispatched() - k0);
        }
      };
    }
  };
  // innermost first so a parent's time includes its children (attn includes its norms)
  for (const b of [...model.blocks, ...model.mtp.map((m) => m.block)]) {
    wrap(b.attnNorm as never, 'norm'); if (b.attnPostNorm) wrap(b.attnPostNorm as never, 'norm');
    wrap(b.mlpNorm as never, 'norm'); if (b.mlpPostNorm) wrap(b.mlpPostNorm as never, 'norm');
    wrap(b.attn as never, 'attention'); wrap(b.ffn as never, b.moe ? 'moe' : 'mlp');
  }
  wrap(model.head as never, 'head');
  wrap(model.embedding as never, 'embedding');
}

async function run(backend: BackendName) {
  await initBackend(backend, argv.includes('--gemm') ? { gemm: arg('gemm', 'auto') as 'auto' | 'wasm' | 'openblas' } : {});
  const cfg = resolveConfig(preset);
  const steps = Number(arg('steps', backend === 'cpu' ? '1' : quick ? '2' : '5'));
  const model = new MoEGPT(cfg, 1);
  const V = cfg.vocabSize;
  let seed = 12345;
  const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) % V;
  const tokens = Int32Array.from({ length: B * S }, rnd), targets = Int32Array.from({ length: B * S }, rnd);
  const step = () => {
    const g = new GradStore();
    const t0 = performance.now(), c0 = process.cpuUsage();
    const r = model.forwardBackward(tokens, targets, B, S, defaultContext(), g);
    // tfjs cpu and wasm kernels run synchronously: no dataSync needed (it would add an 80 MB copy of the grads)
    const ms = performance.now() - t0, c = process.cpuUsage(c0);
    g.dispose();
    return { ms, cpuMs: (c.user + c.system) / 1000, loss: r.loss };
  };
  if (backend !== 'cpu') step(); // warm-up (kernel compilation, allocator)
  const times: number[] = [], cpuTimes: number[] = [];
  let loss = 0;
  for (let i = 0; i < steps; i++) { const r = step(); times.push(r.ms); cpuTimes.push(r.cpuMs); loss = r.loss; }
  const median = (v: number[]) => v.slice().sort((a, b) => a - b)[v.length >> 1];
  const ms = median(times), cpuMs = median(cpuTimes);
  const fl = modelFlopsPerTokenBreakdown(cfg, S);
  const tokensPerSec = (B * S) / (ms / 1000);
  const gflops = (fl.total * B * S) / ms / 1e6;
  const gflopsCpu = (fl.total * B * S) / cpuMs / 1e6; // per CPU-second: robust to other load on the machine
  // per-module wall time and kernel profile of one more step (wasm; cpu is too slow for a 2nd step)
  const moduleMs = new Map<string, number>(), moduleKernels = new Map<string, number>();
  let kernels: { name: string; count: number; ms: number }[] = [];
  if (!argv.includes('--no-profile') && backend !== 'cpu') {
    instrument(model, moduleMs, moduleKernels);
    const info = await tf.profile(() => { step(); });
    const agg = new Map<string, { count: number; ms: number }>();
    for (const k of info.kernels) {
      const e = agg.get(k.name) ?? { count: 0, ms: 0 };
      e.count++; e.ms += typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
      agg.set(k.name, e);
    }
    kernels = [...agg].map(([name, e]) => ({ name, count: e.count, ms: +e.ms.toFixed(2) })).sort((a, b) => b.ms - a.ms);
  }
  const dense = denseGemm(backend === 'cpu' ? 256 : 512, backend === 'cpu' ? 2 : 10);
  const result = {
    backend: backendLabel(), preset, batch: B, seqLen: S, steps, params: model.params.numel(),
    msPerStep: +ms.toFixed(1), stepsMs: times.map((t) => +t.toFixed(1)), cpuMsPerStep: +cpuMs.toFixed(1),
    stepsCpuMs: cpuTimes.map((t) => +t.toFixed(1)), loadAverage: loadavg()[0], loss: +loss.toFixed(4),
    tokensPerSec: +tokensPerSec.toFixed(1),
    modelFlopsPerToken: fl.total, modelFlopsPerTokenLinear: fl.linear, modelFlopsPerTokenCoreAttention: fl.core,
    modelGflops: +gflops.toFixed(2), modelGflopsPerCpuSecond: +gflopsCpu.toFixed(2), denseGemmGflops: +dense.toFixed(2), denseGemmSize: backend === 'cpu' ? 256 : 512,
    moduleCpuMs: Object.fromEntries([...moduleMs].map(([k, v]) => [k, +v.toFixed(1)]).sort()),
    moduleKernels: Object.fromEntries([...moduleKernels].sort()),
    // tfjs kernels dispatched by one MoE layer (forward + backward, router included)
    kernelsPerMoELayer: moduleKernels.size ? ((moduleKernels.get('moe.forward') ?? 0) + (moduleKernels.get('moe.backward') ?? 0)) / [...model.blocks, ...model.mtp.map((m) => m.block)].filter((b) => b.moe).length : 0,
    savedActivationMB: +(model.savedActivationReport().reduce((a, e) => a + e.bytes, 0) / 2 ** 20).toFixed(2),
    kernelCount: kernels.reduce((a, k) => a + k.count, 0), topKernels: kernels.slice(0, 15),
  };
  console.log(`${backend}: ${preset} B=${B} S=${S}: ${ms.toFixed(0)} ms/step (${cpuMs.toFixed(0)} ms CPU), ${tokensPerSec.toFixed(0)} tok/s, ` +
    `${gflops.toFixed(2)} GFLOP/s model (${gflopsCpu.toFixed(2)} per CPU-s; dense GEMM ${dense.toFixed(1)} GFLOP/s), load ${loadavg()[0].toFixed(1)}`);
  if (moduleMs.size) console.log('  module CPU ms:', result.moduleCpuMs);
  if (kernels.length) console.log(`  kernels/step ${result.kernelCount}, per MoE layer ${result.kernelsPerMoELayer} (fwd+bwd):`, result.moduleKernels);
  if (kernels.length) console.log('  top kernels:', kernels.slice(0, 10).map((k) => `${k.name}×${k.count} ${k.ms}ms`).join(', '));
  mkdirSync('bench/results', { recursive: true });
  const suffix = argv.includes('--gemm') ? `-gemm-${arg('gemm', 'auto')}` : '';
  writeFileSync(`bench/results/model-${backend}${suffix}.json`, JSON.stringify(result, null, 2) + '\n');
  model.dispose();
}

(async () => { for (const b of backends) await run(b); })().catch((e) => { console.error(e instanceof Error ? e.stack : e); process.exit(1); });
