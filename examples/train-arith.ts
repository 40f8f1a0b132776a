// Train a 16-expert variant of `tiny` on 2-digit additions and report exact match on held-out
// problems. The same as:
//   node bin/ultramoe.mjs train --data arith:add --seq 32 --batch 32 --steps 2000 --warmup 50 \
//     --eval-every 250 --override '{"moe":{"numExperts":16,"topk":2}}' --out runs/arith
// Run: npx tsx examples/train-arith.ts [steps]
import { runTraining, validateRun, type RunOptions } from '../src/train/run.ts';
import { defaultTrainConfig } from '../src/train/trainer.ts';

const steps = Number(process.argv[2] ?? 2000);
const opts: RunOptions = {
  preset: 'tiny',
  overrides: { moe: { numExperts: 16, topk: 2 } },
  backend: 'wasm',
  data: 'arith:add',
  tokenizer: 'byte',
  train: defaultTrainConfig({ steps, batch: 32, seqLen: 32, lr: 3e-3, minLr: 3e-4, warmupSteps: 50, evalEvery: 250, evalBatches: 4 }),
  out: 'runs/example-arith',
  resume: null,
  checkpointEvery: 0,
  progress: 'lines',
  explicit: new Set(),
};
const problems = validateRun(opts);
if (problems.length) { console.error(problems.join('\n')); process.exit(2); }
runTraining(opts).then(
  (s) => console.log(`exact match ${(100 * (s.exactMatch ?? 0)).toFixed(1)}%, val loss ${s.valLoss.toFixed(3)}, report ${s.report}`),
  (e) => { console.error(e); process.exitCode = 1; },
);
