import { initBackend } from '/work/main/src/backend/tf.ts';
import { resolveConfig } from '/work/main/src/model/config.ts';
import { Cluster, getSpec } from '/work/main/src/device/index.ts';
import { ParallelModel } from '/work/main/src/parallel/parallel-model.ts';
import { simulate } from '/work/main/src/sim/cost-model.ts';
import { modelCost } from '/work/main/src/sim/model-cost.ts';
import { DEFAULT_OPTIONS, NEUTRAL_CALIBRATION } from '/work/main/src/sim/types.ts';
await initBackend('wasm');
const layout = process.argv[2] ?? 'ep=4,dp=4';
const cfg = resolveConfig('tiny', { hiddenSize: 256, numLayers: 2, numDenseLayers: 0, denseIntermediateSize: 512, numHeads: 4, numKvHeads: 4, headDim: 64, vocabSize: 256, attention: 'gqa', maxSeqLen: 1024,
  moe: { numExperts: 16, topk: 2, expertHiddenSize: 256, numSharedExperts: 0, auxLoss: [{ type: 'switch', coeff: 1e-2 }], zLossCoeff: 0 } });
const S = 256; const dims = Object.fromEntries(layout.split(',').map((p) => p.split('=')).map(([k, v]) => [k, +v]));
const dp = dims.dp ?? 1, tp = dims.tp ?? 1, ep = dims.ep ?? 1; const B = dp;
const tokens = Int32Array.from({ length: B * S }, (_, i) => (i * 31 + 7) % cfg.vocabSize);
const targets = Int32Array.from({ length: B * S }, (_, i) => (i * 17 + 3) % cfg.vocabSize);
const spec = getSpec('ascend-910b');
const t0 = Date.now();
const cluster = new Cluster({ spec, nodes: Math.ceil(tp * dp / 8), dtype: 'bf16' });
const pm = new ParallelModel(cfg, cluster, { layout, seed: 1 });
pm.forwardBackward(tokens, targets, B, S);
console.log('wall', Date.now() - t0, 'ms makespan', cluster.timeline.makespan * 1e6, 'us');
const agg = new Map<string, [number, number]>();
for (const e of cluster.timeline.events) if (e.device === 0) { const k = e.stream + ' ' + e.name.replace(/layers\.\d+|L\d+/g, 'L').replace(/ [a-zA-Z0-9_.]+\.(weight|w\d|bias|scale|wq|wk|wv|wo)\S*/g, ''); const a = agg.get(k) ?? [0, 0]; a[0]++; a[1] += e.end - e.start; agg.set(k, a); }
for (const [k, [n, t]] of [...agg].sort((a, b) => b[1][1] - a[1][1])) console.log(k.padEnd(50), n, (t * 1e6).toFixed(1));
const mc = modelCost(cfg, S);
const r = simulate(mc, { tp, pp: 1, vpp: 1, ep, cp: 1, dp, microBatch: 1, globalBatch: B, seqLen: S },
  { ...DEFAULT_OPTIONS, recompute: 'none', distributedOptimizer: false, dpOverlap: false, calibration: NEUTRAL_CALIBRATION }, spec);
console.log(Object.fromEntries(Object.entries(r.time).map(([k, v]) => [k, +(v * 1e6).toFixed(1)])));
