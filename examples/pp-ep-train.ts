// Pipeline parallelism combined with expert parallelism, executed numerically on the simulated cluster
// (src/parallel/pp, docs/pipeline-execution.md §PP × EP): the tiny preset with 8 layers on pp=4 × ep=2
// (8 Ascend 910B NPUs of one node), 8 micro-batches, 1F1B and interleaved (vpp 2), adaptive pipe
// overlap off and on. The loss and gradients are the same in every mode (the tensors are computed in
// program order; overlap only changes where the ops sit on the timeline); the table shows the executed
// timeline: step time, bubble, and the fraction of EP all-to-all time hidden behind compute.
//   npx tsx examples/pp-ep-train.ts [out-dir]      (writes one Perfetto trace per mode)
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { initBackend } from '../src/backend/tf.ts';
import { resolveConfig } from '../src/model/config.ts';
import { Cluster, getSpec } from '../src/device/index.ts';
import { PipelineParallelModel } from '../src/parallel/pp/pp-model.ts';
import { epCommHidden } from '../src/parallel/pp/ep-hidden.ts';

await initBackend('wasm');
const out = process.argv[2] ?? join(tmpdir(), 'ultramoe-pp-ep');
mkdirSync(out, { recursive: true });
const cfg = resolveConfig('tiny', { numLayers: 8 });
const B = 16, S = 32, M = 8, V = cfg.vocabSize;
const tokens = Int32Array.from({ length: B * S }, (_, i) => (i * 7 + 3) % V);
const targets = Int32Array.from({ length: B * S }, (_, i) => (i * 5 + 1) % V);
const us = (s: number) => `${(s * 1e6).toFixed(0)} µs`, pct = (x: number) => `${(100 * x).toFixed(1)}%`;

console.log(`tiny, 8 layers, pp=4 × ep=2 (dp=2 inside each stage) on 8 × ${getSpec('ascend-910b').name}; global batch ${B}×${S}, ${M} micro-batches`);
console.log('| schedule | overlap | loss | step (simulated) | bubble | EP a2a Σ | hidden | F/B pairs | peak HBM dev 0 / dev 7 |');
console.log('|---|---|---|---|---|---|---|---|---|');
for (const schedule of ['1f1b', 'interleaved'] as const) {
  for (const overlap of [false, true]) {
    const cluster = new Cluster({ spec: getSpec('ascend-910b'), nodes: 1 });
    const pp = new PipelineParallelModel(cfg, cluster, { layout: 'pp=4,ep=2', vpp: schedule === 'interleaved' ? 2 : 1, schedule, seed: 1, overlap });
    const r = pp.forwardBackward(tokens, targets, B, S, { microBatches: M });
    const h = epCommHidden(cluster.timeline, pp.devices.flat());
    const MiB = (d: number) => (cluster.device(d).hbm.peak / 2 ** 20).toFixed(1);
    console.log(`| ${schedule} | ${overlap ? 'on' : 'off'} | ${r.loss.toFixed(6)} | ${us(r.stepSeconds)} | ${pct(r.bubbleFraction)} | ${us(h.comm)} | ${pct(h.fraction)} | ${r.pairs} | ${MiB(0)} / ${MiB(7)} MiB |`);
    writeFileSync(join(out, `pp4-ep2-${schedule}-overlap-${overlap ? 'on' : 'off'}.trace.json`), JSON.stringify(cluster.trace()));
    pp.dispose();
  }
}
console.log(`traces: ${out} (open in https://ui.perfetto.dev)`);
