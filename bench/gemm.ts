// GEMM benchmark: 2-D, transposed and batched matMul, the MoE grouped GEMM and an MLP fwd+bwd, for
// stock wasm, wasm + our overrides, wasm + OpenBLAS and cpu (smaller sizes).
// Usage: npx tsx bench/gemm.ts [--quick] [--only wasm-stock|wasm|wasm+openblas|cpu]   → bench/results/gemm.json and a table on stdout.
import { writeFileSync, mkdirSync } from 'node:fs';
import { cpus } from 'node:os';
import { tf, initBackend, selectGemm, backendLabel, groupedMatMul, groupedMatMulTransposed, groupedWeightGrad } from '../src/backend/tf.ts';
import { setOverridesEnabled } from '../src/backend/register.ts';
import { loadOpenBlas } from '../src/backend/openblas.ts';

const quick = process.argv.includes('--quick');
const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : '';
const want = (c: string) => !only || only === c;
const BUDGET_MS = quick ? 150 : 600;

/** [median, min] ms of fn over ≥3 runs (after one warm-up) within about BUDGET_MS. */
function time(fn: () => tf.Tensor | tf.Tensor[]): [number, number] {
  const once = () => { const t0 = performance.now(); const r = tf.tidy(fn); [r].flat().forEach((t) => t.dataSync()); tf.dispose(r); return performance.now() - t0; };
  once();
  const runs: number[] = [];
  const start = performance.now();
  while (runs.length < 3 || (performance.now() - start < BUDGET_MS && runs.length < 200)) runs.push(once());
  runs.sort((a, b) => a - b);
  return [runs[runs.length >> 1], runs[0]];
}

interface Row { config: string; op: string; shape: string; ms: number; gflops: number; minMs: number; bestGflops: number }
const rows: Row[] = [];
function record(config: string, op: string, shape: string, flops: number, fn: () => tf.Tensor | tf.Tensor[]): void {
  const [ms, min] = time(fn);
  const row = { config, op, shape, ms: +ms.toFixed(3), gflops: +(flops / ms / 1e6).toFixed(2), minMs: +min.toFixed(3), bestGflops: +(flops / min / 1e6).toFixed(2) };
  rows.push(row);
  console.log(`${config.padEnd(14)} ${op.padEnd(22)} ${shape.padEnd(28)} ${ms.toFixed(2).padStart(9)} ms ${row.gflops.toFixed(2).padStart(8)} GFLOP/s (best ${row.bestGflops.toFixed(1)})`);
}

const rnd = (s: number[]) => tf.randomNormal(s, 0, 0.05, 'float32', 1);

function mlp(config: string, B: number, D: number, H: number): void {
  const x = rnd([B, D]), y = rnd([B, D]);
  const ps = [rnd([D, H]), tf.zeros([H]), rnd([H, D]), tf.zeros([D])];
  const loss = (w1: tf.Tensor, b1: tf.Tensor, w2: tf.Tensor, b2: tf.Tensor) =>
    tf.losses.meanSquaredError(y, tf.add(tf.matMul(tf.relu(tf.add(tf.matMul(x, w1), b1)), w2), b2)) as tf.Scalar;
  record(config, 'MLP fwd+bwd', `B${B} D${D} H${H}`, 6 * B * (D * H + H * D), () => tf.grads(loss as (...a: tf.Tensor[]) => tf.Tensor)(ps));
  tf.dispose([x, y, ...ps]);
}

function suite(config: string, big: boolean): void {
  const n = big ? 512 : 128;
  const a = rnd([n, n]), b = rnd([n, n]);
  record(config, 'matMul', `${n}³`, 2 * n ** 3, () => tf.matMul(a, b));
  record(config, 'matMul transposeA', `${n}³`, 2 * n ** 3, () => tf.matMul(a, b, true, false));
  record(config, 'matMul transposeB', `${n}³`, 2 * n ** 3, () => tf.matMul(a, b, false, true));
  const [bb, m, k] = big ? [16, 128, 64] : [4, 64, 32];
  const ba = rnd([bb, m, k]), bk = rnd([bb, k, m]);
  record(config, 'batchMatMul', `[${bb},${m},${k}]×[${bb},${k},${m}]`, 2 * bb * m * k * m, () => tf.matMul(ba, bk));
  tf.dispose([a, b, ba, bk]);

  const [E, R, H, F] = big ? [256, 16, 128, 64] : [32, 16, 64, 32];
  const counts = Array(E).fill(R), N = E * R;
  const x = rnd([N, H]) as tf.Tensor2D, w = rnd([E, H, F]) as tf.Tensor3D, dy = rnd([N, F]) as tf.Tensor2D;
  const shape = `${E}×${R} rows [${H},${F}]`;
  if (config === 'wasm-stock') { // what the model would do with stock ops: split, per-expert matMuls, concat
    const ws = tf.unstack(w);
    record(config, 'grouped fwd (ops)', shape, 2 * N * H * F, () => tf.concat(tf.split(x, counts).map((xe, e) => tf.matMul(xe, ws[e])), 0));
    tf.dispose(ws);
  } else {
    record(config, 'grouped fwd', shape, 2 * N * H * F, () => groupedMatMul(x, w, counts));
    record(config, 'grouped dx (nt)', shape, 2 * N * H * F, () => groupedMatMulTransposed(dy, w, counts));
    record(config, 'grouped dw (tn)', shape, 2 * N * H * F, () => groupedWeightGrad(x, dy, counts));
  }
  tf.dispose([x, w, dy]);

  if (config.startsWith('wasm')) { // memory-bound companion of the MoE dispatch: a row permute
    const t = rnd([4096, 256]), idx = tf.tensor1d(Int32Array.from({ length: 4096 }, (_, i) => (i * 2654435761) % 4096), 'int32');
    record(config, 'gather rows (GB/s)', '4096 rows of [4096,256]', 4096 * 256 * 4 * 2 /* bytes read + written */, () => tf.gather(t, idx));
    tf.dispose([t, idx]);
  }
  mlp(config, 128, 256, 1024);
  if (big && config !== 'wasm-stock') mlp(config, 512, 512, 2048); // stock wasm takes ~6 s per step here
}

async function main(): Promise<void> {
  await initBackend('wasm', { gemm: 'wasm' });
  setOverridesEnabled(false);
  if (want('wasm-stock')) suite('wasm-stock', true);
  setOverridesEnabled(true);
  if (want('wasm')) suite('wasm', true);
  const blas = loadOpenBlas();
  if (!want('wasm+openblas')) { /* skipped */ } else if (typeof blas === 'string') console.log(`wasm+openblas: skipped (${blas})`);
  else { selectGemm('openblas'); console.log(`# ${backendLabel()}, ${blas.threads()} BLAS threads`); suite('wasm+openblas', true); selectGemm('wasm'); }
  await initBackend('cpu');
  if (want('cpu')) suite('cpu', false);

  const out = {
    machine: `${cpus()[0]?.model ?? '?'} × ${cpus().length}`, node: process.version, date: new Date().toISOString(),
    note: 'ms = median per call incl. dataSync (minMs = fastest run); GFLOP/s = flops / time (gather rows: GB/s moved); MLP flops = 6·B·(D·H+H·D)', results: rows,
  };
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  writeFileSync(new URL('./results/gemm.json', import.meta.url), JSON.stringify(out, null, 2) + '\n');
  console.log('wrote bench/results/gemm.json');
}

main().catch((e) => { console.error(e instanceof Error ? e.message : e); process.exitCode = 1; });
