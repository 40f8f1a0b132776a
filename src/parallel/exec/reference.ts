// The reference every executor is compared with: MoEGPT.forwardBackward on one device over the same
// micro-batches, same seeds (1 + m by default) and ctx.lossScale = 1/M, gradients accumulated in
// micro-batch order. Also helpers to read gradients back as host arrays.
import type { MoEGPT, LossReport } from '../../model/gpt.ts';
import { GradStore, type ForwardContext } from '../../model/module.ts';
import type { MicroBatch } from './stage-runner.ts';

export interface ReferenceStep { loss: number; reports: LossReport[]; grads: GradStore; contexts: ForwardContext[] }

export function referenceStep(model: MoEGPT, mbs: MicroBatch[], seedOf: (m: number) => number = (m) => 1 + m): ReferenceStep {
  const M = mbs.length, grads = new GradStore();
  const contexts: ForwardContext[] = [], reports: LossReport[] = [];
  mbs.forEach((mb, m) => {
    const ctx: ForwardContext = { training: true, lossScale: 1 / M, seed: seedOf(m), routerStats: [], recordStats: true };
    reports.push(model.forwardBackward(mb.tokens, mb.targets, mb.batch, mb.seqLen, ctx, grads));
    contexts.push(ctx);
  });
  return { loss: reports.reduce((a, r) => a + r.loss, 0) / M, reports, grads, contexts };
}

/** Gradients as host arrays (the store is left intact). */
export function gradArrays(g: GradStore): Map<string, Float32Array> {
  return new Map([...g.grads].map(([n, t]) => [n, t.dataSync() as Float32Array]));
}

/** Deterministic toy micro-batches: M × [batch, seqLen] tokens < vocab, targets = next token. */
export function toyMicroBatches(M: number, batch: number, seqLen: number, vocab: number, salt = 0): MicroBatch[] {
  return Array.from({ length: M }, (_, m) => {
    const n = batch * seqLen;
    const stream = Int32Array.from({ length: n + 1 }, (_, i) => (i * 7 + m * 13 + salt * 31 + ((i * i) % 11)) % vocab);
    return { tokens: stream.slice(0, n), targets: stream.slice(1, n + 1), batch, seqLen };
  });
}
