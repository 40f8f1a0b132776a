// Pipeline schedules: bubble size and in-flight micro-batches (perf-model.md §2.4-2.5,
// moe-semantics.md §10). F, B = per-stage forward/backward time of one micro-batch, W = the
// weight-gradient part of B, m = micro-batches, p = stages, v = virtual chunks per stage.
import type { Schedule } from './types.ts';

export function defaultSchedule(pp: number, vpp: number): Schedule {
  return pp === 1 ? '1f1b' : vpp > 1 ? 'interleaved' : '1f1b';
}

/** Idle time per iteration on a stage, seconds. */
export function bubbleTime(schedule: Schedule, p: number, v: number, F: number, B: number, W = B / 2): number {
  if (p <= 1) return 0;
  switch (schedule) {
    case 'gpipe':
    case '1f1b': return (p - 1) * (F + B);
    case 'interleaved': return ((p - 1) / v) * (F + B);
    case 'zero-bubble': return (p - 1) * Math.max(0, F + B - 2 * W);
    // DualPipe: (p/2 − 1)(F&B + B − 3W) with F&B ≈ F + B (overlapped chunk pair)
    case 'dualpipe': return Math.max(0, p / 2 - 1) * Math.max(0, F + B + B - 3 * W);
  }
}

/** Bubble as a fraction of the ideal (bubble-free) time m·(F+B): (p−1)/m, (p−1)/(v·m), ... */
export function bubbleFraction(schedule: Schedule, p: number, v: number, m: number, F = 1, B = 2, W = B / 2): number {
  return bubbleTime(schedule, p, v, F, B, W) / (m * (F + B));
}

/**
 * Micro-batches whose activations the first stage holds at the peak, in units of "one micro-batch
 * through this stage's layers": 1F1B min(p, m); interleaved × (1 + (p−1)/(p·v)); GPipe m; DualPipe p+1.
 * `extraWarmup` adds micro-batches (adaptive pipe overlap schedules one more in warm-up).
 */
export function inFlightMicroBatches(schedule: Schedule, p: number, v: number, m: number, extraWarmup = 0): number {
  let n: number;
  switch (schedule) {
    case 'gpipe': n = m; break;
    case '1f1b': case 'zero-bubble': n = Math.min(p, m); break;
    case 'interleaved': n = Math.min(p, m) * (1 + (p - 1) / (p * v)); break;
    case 'dualpipe': n = Math.min(p + 1, m); break;
  }
  return Math.min(n + extraWarmup, schedule === 'gpipe' ? m : m + extraWarmup);
}

/** Number of model-parameter copies per stage the schedule needs (DualPipe keeps two). */
export function paramCopies(schedule: Schedule): number {
  return schedule === 'dualpipe' ? 2 : 1;
}

/**
 * Layers per pipeline stage when the last stage also runs the output head(s), worth `headLayers`
 * transformer layers: the last stage takes `last` layers and every other stage at most `per`, chosen to
 * minimise the heaviest stage (Megatron `--decoder-last-pipeline-num-layers` / `--pipeline-model-parallel-layout`,
 * e.g. Megatron-Bridge's DeepSeek-V3 layout "Et|(tt|)*30mL" whose last chunk holds only MTP + loss; MindSpeed
 * `--noop-layers` on the last stage). With headLayers = 0 this is the uniform split padded with no-op layers.
 * `paired` (DualPipe): rank 0 runs the first and the last stage, each for half of the micro-batches.
 */
export function stageSplit(n: number, pp: number, vpp: number, headLayers: number, paired = false): { per: number; last: number } {
  if (pp <= 1) return { per: n, last: n };
  const uniform = Math.ceil(n / (pp * vpp)) * vpp;
  const costOf = (p: number, x: number) => Math.max(p, paired ? (p + x + headLayers) / 2 : x + headLayers);
  let per = uniform, last = Math.max(0, n - uniform * (pp - 1));
  let cost = costOf(per, last);
  for (let x = Math.min(last, uniform) - 1; x >= 0; x--) { // move layers off the last stage while it helps
    const p = Math.ceil((n - x) / (pp - 1));
    const c = costOf(p, x);
    if (c < cost - 1e-9) { cost = c; per = p; last = x; }
  }
  return { per, last };
}
