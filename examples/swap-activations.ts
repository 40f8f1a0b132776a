// Swapping saved activations to host memory: after their forward use they move to the node's host
// ledger ('swapped') on the host-copy stream; before their backward use they are prefetched back, so
// the copies overlap compute. minOffloadSize and offloadFraction choose what moves.
//   npx tsx examples/swap-activations.ts
import { initBackend } from '../src/backend/tf.ts';
import { resolveConfig } from '../src/model/config.ts';
import { MoEGPT } from '../src/model/gpt.ts';
import { runTrainStep, type TrainStepOptions } from '../src/parallel/exec/train-step.ts';
import { toyMicroBatches } from '../src/parallel/exec/reference.ts';

await initBackend('wasm');
const cfg = resolveConfig('tiny');
const model = new MoEGPT(cfg, 1);
const mbs = toyMicroBatches(4, 2, 64, cfg.vocabSize);
const MiB = (b: number) => `${(b / 2 ** 20).toFixed(2)} MiB`;

const runs: [string, Partial<TrainStepOptions>][] = [
  ['no swap', {}],
  ['--swap core_attn', { swap: 'core_attn' }],
  ['--swap core_attn,expert_fc1,moe_act (min 256 KiB)', { swap: 'core_attn,expert_fc1,moe_act', minOffloadSize: 2 ** 18 }],
  ['--swap core_attn,expert_fc1,moe_act (fraction 0.5)', { swap: 'core_attn,expert_fc1,moe_act', offloadFraction: 0.5 }],
];
for (const [label, extra] of runs) {
  const r = await runTrainStep(model, { pp: 2, microBatches: mbs, gantt: false, ...extra });
  r.grads.dispose();
  const s = r.cluster.timeline.commSummary();
  const reloads = r.run.ledgers.flatMap((l) => [...l.reloads.values()]);
  console.log(`${label.padEnd(52)} HBM activations peak ${r.perDevicePeakByCategory.map((p) => MiB(p.activations ?? 0)).join(' / ')}` +
    `  host swapped peak ${MiB(r.hostSwappedPeakBytes[0])}  copies ${(s.reduce((a, x) => a + x.hostCopy, 0) * 1e6).toFixed(0)} µs` +
    ` (exposed ${(s.reduce((a, x) => a + x.exposedHostCopy, 0) * 1e6).toFixed(0)} µs)  step ${(r.stepTimeSeconds * 1e6).toFixed(0)} µs` +
    `  reloads ${reloads.length} (each once: ${reloads.every((n) => n === 1)})`);
}
model.dispose();
