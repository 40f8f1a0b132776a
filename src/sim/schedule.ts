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
