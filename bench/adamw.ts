// Optimizer benchmark: AdamW step and global gradient norm on a preset's real parameter set (random
// gradients), fused wasm kernel (src/backend/adamw.ts) vs the unfused tfjs ops, on the wasm backend.
// Usage: npx tsx bench/adamw.ts [--preset tiny|small] [--reps 5]
//   → a table on stdout (wall and CPU ms, medians) and bench/results/adamw-<preset>.json.
import { loadavg } from 'node:os';
import { writeFileSync, mkdirSync } from 'node:fs';
import { tf, initBackend } from '../src/backend/tf.ts';
import { resolveConfig } from '../src/model/config.ts';
import { createModel } from '../src/train/model.ts';
import { GradStore } from '../src/model/module.ts';
import { AdamW, globalGradNorm } from '../src/train/optimizer.ts';

const arg = (k: string, d: string) => (process.argv.includes(k) ? process.argv[process.argv.indexOf(k) + 1] : d);
const preset = arg('--preset', 'tiny'), reps = Number(arg('--reps', '5'));
await initBackend('wasm');
const model = createModel(resolveConfig(preset), 1);
const params = model.params;
const grads = new GradStore();
for (const [n, p] of params.vars) grads.grads.set(n, tf.keep(tf.randomNormal(p.shape, 0, 1e-3, 'float32', 7)));

/** Median wall and CPU ms of fn over `reps` runs after one warm-up. */
function time(fn: () => void): { wall: number; cpu: number } {
  fn();
  const w: number[] = [], c: number[] = [];
  for (let i = 0; i < reps; i++) {
    const c0 = process.cpuUsage(), t0 = performance.now();
    fn();
    w.push(performance.now() - t0);
    const d = process.cpuUsage(c0); c.push((d.user + d.system) / 1e3);
  }
  const med = (x: number[]) => x.sort((a, b) => a - b)[x.length >> 1];
  return { wall: med(w), cpu: med(c) };
}
/** The previous globalGradNorm: float32 sums of squares, one tfjs addN. */
function normFp32(): number {
  const sq = tf.tidy(() => tf.addN([...grads.grads.values()].map((g) => tf.sum(tf.square(g)))));
  const v = sq.dataSync()[0]; sq.dispose();
  return Math.sqrt(v);
}
const rows: [string, { wall: number; cpu: number }][] = [];
for (const impl of ['tfjs', 'auto'] as const) {
  const opt = new AdamW(params);
  opt.impl = impl;
  rows.push([`AdamW.step (${impl === 'auto' ? 'fused wasm' : 'tfjs ops'})`, time(() => opt.step(grads, 1e-4, 0.5))]);
  opt.dispose();
}
let n32 = 0, n64 = 0;
rows.push(['grad norm (tfjs fp32 addN)', time(() => { n32 = normFp32(); })]);
rows.push(['grad norm (float64, heap)', time(() => { n64 = globalGradNorm(grads); })]);
let ref = 0;
for (const g of grads.grads.values()) { const x = g.dataSync(); for (let i = 0; i < x.length; i++) ref += x[i] * x[i]; }
console.log(`preset ${preset}: ${(params.numel() / 1e6).toFixed(2)}M parameters, ${params.vars.size} tensors; median of ${reps}; load ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
for (const [name, t] of rows) console.log(`  ${name.padEnd(30)} ${t.wall.toFixed(1).padStart(7)} ms   (CPU ${t.cpu.toFixed(1)} ms)`);
console.log(`  grad norm relative error vs float64 host sum: fp32 ${(Math.abs(n32 - Math.sqrt(ref)) / Math.sqrt(ref)).toExponential(1)}, float64 ${(Math.abs(n64 - Math.sqrt(ref)) / Math.sqrt(ref)).toExponential(1)}`);
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
writeFileSync(new URL(`./results/adamw-${preset}.json`, import.meta.url), JSON.stringify({
  preset, params: params.numel(), tensors: params.vars.size, reps, loadavg: loadavg(),
  rows: rows.map(([name, t]) => ({ name, wallMs: +t.wall.toFixed(2), cpuMs: +t.cpu.toFixed(2) })),
  gradNormRelErr: { fp32: Math.abs(n32 - Math.sqrt(ref)) / Math.sqrt(ref), float64: Math.abs(n64 - Math.sqrt(ref)) / Math.sqrt(ref) },
}, null, 1) + '\n');
grads.dispose(); model.dispose();
