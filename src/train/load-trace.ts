// Expert-load traces recorded from our own training runs (`ultramoe train --trace-loads FILE`): the
// routers' tokens per expert of every MoE layer at every optimizer step (summed over micro-batches and,
// in parallel runs, over ranks), in the `ultramoe.expert-load-trace` format that `ultramoe place` and
// bench/placement.ts read (src/parallel/placement/trace.ts).
import type { ModelConfig } from '../model/config.ts';
import { TRACE_FORMAT, type ExpertLoadTrace } from '../parallel/placement/trace.ts';
import type { TrainConfig } from './trainer.ts';

export function loadTraceJSON(steps: number[][][], cfg: ModelConfig, t: TrainConfig, meta: Record<string, unknown>): ExpertLoadTrace {
  const name = `${cfg.name}-${t.steps}steps-seed${t.seed}`;
  return {
    format: TRACE_FORMAT, version: 1, name,
    numLayers: steps[0]?.length ?? 0, numExperts: cfg.moe.numExperts, topK: cfg.moe.topk,
    tokensPerStep: t.batch * t.seqLen * t.microBatches,
    steps: steps.map((s) => s.map((row) => row.map((v) => Math.round(v)))),
    meta: { ...meta, producer: 'ultramoe train --trace-loads', batch: t.batch, seqLen: t.seqLen, microBatches: t.microBatches, lr: t.lr, note: 'tokens per expert per MoE layer per optimizer step (logical experts, after dropping)' },
  };
}
