// OpenBLAS thread count per GEMM, chosen from measured speed (pure: the caller times the calls).
//
// On an idle 2-core machine 2 BLAS threads run even the MoE expert GEMMs (96×128×256, ~3M
// multiply-adds) 1.5–1.7× faster than 1 (measured 98 → 157 GFLOP/s); on a machine where another
// process holds a core the same calls run slower on 2 threads, and a 2-thread call can wait a whole
// scheduler slice (docs/backend.md). No fixed size threshold is right for both, so the choice is
// measured: GEMMs are grouped in size classes (⌊log2(M·N·K)⌋), each class keeps a running cost per
// multiply-add for 1 and for `max` threads, uses the cheaper one, and re-tries the other now and
// then (exponential back-off while the decision holds) so that a change of load is noticed.
// Thread count never changes the result: OpenBLAS splits the M and N ranges between threads, not K.

/** Below this many multiply-adds a GEMM always runs on 1 thread (hand-off costs more than it saves). */
export const MIN_PARALLEL_WORK = 1 << 19;
/** Samples of each choice a class collects (alternating) before it starts exploiting. */
const WARMUP = 3;
/** Exploration interval bounds, in calls of the class. */
const EXPLORE_MIN = 16, EXPLORE_MAX = 1024;
/** Weight of a new sample in the running cost; a sample is clamped to CLAMP × the running cost so
 *  one preempted call (a stall of a scheduler slice) cannot decide alone. */
const ALPHA = 0.25, CLAMP = 4;

interface ClassState {
  cost: [number, number]; // running ms per multiply-add: [1 thread, max threads]
  samples: [number, number];
  calls: number;
  nextExplore: number;
  interval: number;
  best: 0 | 1;
}

export interface ThreadChoice {
  /** Threads for a GEMM of `work` multiply-adds. */
  threads: number;
  /** Whether the caller should time it and `report` the result. */
  timed: boolean;
  cls: number;
}

export class BlasThreadTuner {
  private classes = new Map<number, ClassState>();

  /** max: the largest thread count (1 disables tuning); fixedThreshold: if set, the old static
   *  policy (max threads from this many multiply-adds up, else 1), no measurements. */
  constructor(readonly max: number, public fixedThreshold: number | null = null) {}

  pick(work: number): ThreadChoice {
    if (this.max <= 1 || work < MIN_PARALLEL_WORK) return { threads: 1, timed: false, cls: -1 };
    if (this.fixedThreshold !== null) return { threads: work >= this.fixedThreshold ? this.max : 1, timed: false, cls: -1 };
    const cls = Math.floor(Math.log2(work));
    let s = this.classes.get(cls);
    if (!s) {
      s = { cost: [0, 0], samples: [0, 0], calls: 0, nextExplore: EXPLORE_MIN, interval: EXPLORE_MIN, best: 1 };
      this.classes.set(cls, s);
    }
    s.calls++;
    let arm: 0 | 1;
    if (s.samples[0] < WARMUP || s.samples[1] < WARMUP) arm = s.samples[1] <= s.samples[0] ? 1 : 0;
    else if (s.calls >= s.nextExplore) { arm = s.best === 0 ? 1 : 0; s.nextExplore = s.calls + s.interval; }
    else arm = s.best;
    return { threads: arm === 1 ? this.max : 1, timed: true, cls };
  }

  /** The measured wall time of a call made with `pick(work)`'s choice. */
  report(choice: ThreadChoice, work: number, ms: number): void {
    const s = this.classes.get(choice.cls);
    if (!s || !choice.timed) return;
    const arm = choice.threads === 1 ? 0 : 1;
    const c = ms / work;
    const prev = s.cost[arm];
    s.cost[arm] = s.samples[arm] === 0 ? c : (1 - ALPHA) * prev + ALPHA * Math.min(c, CLAMP * prev);
    s.samples[arm]++;
    if (s.samples[0] < WARMUP || s.samples[1] < WARMUP) return;
    const best: 0 | 1 = s.cost[1] < s.cost[0] ? 1 : 0;
    if (arm !== s.best) {
      // an exploration: a confirmed decision backs off, a reversed one resets the interval
      s.interval = best === s.best ? Math.min(EXPLORE_MAX, s.interval * 2) : EXPLORE_MIN;
      s.nextExplore = s.calls + s.interval;
    }
    s.best = best;
  }

  /** For reports and tests: per size class, [cost 1 thread, cost max threads] in ns per multiply-add and the choice. */
  summary(): { log2Work: number; ns1: number; nsMax: number; threads: number; calls: number }[] {
    return [...this.classes].sort((a, b) => a[0] - b[0]).map(([cls, s]) => ({
      log2Work: cls, ns1: +(s.cost[0] * 1e6).toFixed(4), nsMax: +(s.cost[1] * 1e6).toFixed(4),
      threads: s.best === 1 ? this.max : 1, calls: s.calls,
    }));
  }
}
