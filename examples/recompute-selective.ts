// Selective and full recomputation, executed: drop named saved activations after each layer's forward
// and rebuild them (from what is still saved) right before their consumer's backward, or replay whole
// layers. Gradients are bitwise those of no recomputation; the resident peak goes down.
//   npx tsx examples/recompute-selective.ts
// Model: `tiny` shrunk to batch 2 × seq 64 so it runs in a few seconds; one simulated Ascend 910B.
import { initBackend } from '../src/backend/tf.ts';
import { resolveConfig } from '../src/model/config.ts';
import { MoEGPT } from '../src/model/gpt.ts';
import { runTrainStep } from '../src/parallel/exec/train-step.ts';
import { gradArrays, toyMicroBatches } from '../src/parallel/exec/reference.ts';

await initBackend('wasm');
const cfg = resolveConfig('tiny');
const model = new MoEGPT(cfg, 1);
const mbs = toyMicroBatches(2, 2, 64, cfg.vocabSize);
const MiB = (b: number) => `${(b / 2 ** 20).toFixed(2)} MiB`;

let ref: { peak: number; step: number; g: Map<string, Float32Array> } | null = null;
for (const recompute of ['none', 'core_attn', 'mla_up_proj,moe_act,mlp_act,norm,permute', 'full']) {
  for (const l of model.moeLayers()) l.resetGlobalAux();
  const r = await runTrainStep(model, { pp: 1, microBatches: mbs, recompute, gantt: false });
  const g = gradArrays(r.grads); r.grads.dispose();
  const peak = r.peakActivationBytes[0];
  ref ??= { peak, step: r.stepTimeSeconds, g };
  const same = [...ref.g].every(([n, a]) => g.get(n)!.every((x, i) => x === a[i]));
  const recomputed = [...r.run.ledgers[0].recomputes.values()].reduce((a, b) => a + b, 0);
  console.log(`--recompute ${recompute.padEnd(42)} peak ${MiB(peak).padStart(10)} (${(100 * peak / ref.peak).toFixed(1).padStart(5)}%)  ` +
    `step ${(r.stepTimeSeconds * 1e6).toFixed(1)} µs (+${(100 * (r.stepTimeSeconds / ref.step - 1)).toFixed(1)}%)  ` +
    `entries rebuilt ${recomputed}  grads bitwise equal: ${same}  router stats: ${r.run.contexts.map((c) => c.routerStats.length).join('+')}`);
}
model.dispose();
