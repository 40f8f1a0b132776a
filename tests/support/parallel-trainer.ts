// Shared by the trainer-on-simulated-devices tests: run `steps` optimizer steps of the trainer through a
// ParallelEngine built from CLI-style flags (which must be valid), returning the losses and the parts.
import * as assert from 'uvu/assert';
import type { ModelConfig } from '../../src/model/config.ts';
import type { MoEGPT } from '../../src/model/gpt.ts';
import type { Dataset } from '../../src/train/data.ts';
import { createModel } from '../../src/train/model.ts';
import { ParallelEngine } from '../../src/train/parallel.ts';
import { parseParallelFlags } from '../../src/train/parallel-flags.ts';
import { Trainer, type TrainConfig } from '../../src/train/trainer.ts';

export function runParallel(ds: Dataset, cfg: ModelConfig, t: TrainConfig, raw: Parameters<typeof parseParallelFlags>[0], steps: number,
  each?: (e: ParallelEngine, step: number) => void) {
  const { flags, problems } = parseParallelFlags(raw, cfg, t.batch, t.seqLen, t.microBatches);
  assert.equal(problems, []);
  const host = createModel(cfg, t.seed) as MoEGPT;
  const e = new ParallelEngine(cfg, flags!, t.batch * t.microBatches, t.seqLen, t.microBatches, t.seed, t.adamw, host);
  const tr = new Trainer(host, ds, t, 1, 1, cfg.moe.topk, e, true);
  const losses = Array.from({ length: steps }, (_, s) => { each?.(e, s); return tr.trainStep().loss; });
  return { losses, e, tr, host, done: () => { tr.dispose(); e.dispose(); host.dispose(); } };
}
