// Selective recompute and swap inside a pipeline stage that runs TP/DP/EP (pp-model.ts `memory`):
// the single-device MemoryExecutor (exec/memory-executor.ts) once per device of the stage, around the
// ParallelModel layer phases (pm-phases.ts PhaseMemory hooks). Same semantics as exec/stage-runner.ts:
//   forward:  entries dropped / moved to host at their release points (beforeForward) and at the end
//             of the layer (afterForward); D2H copies on the device's `host-copy` stream after the
//             layer's last op on that device;
//   backward: the layer's host entries reloaded (H2D on `host-copy-in`), the next layers' prefetched
//             (plan.prefetchAhead), the recompute FLOPs charged as one `recompute` op on the device's
//             chain before the layer's backward ops, which also wait for the device's own H2D copies
//             (PipeClock.waitOn); dropped entries are rebuilt lazily by their recipes when read.
// Every record of the stage is charged through one SavedLedger per device (HBM `activations`, host
// `swapped`). The plan is makePlan on the single-device descriptors at the micro-batch's shape; the
// recompute FLOPs of an entry on a device are the descriptor's scaled by the entry's size on that
// device (TP holds a head slice, an EP rank its received tokens). Supported classes: stage-memory-rules.ts.
// `recompute: 'full'` replays whole layer groups in lockstep (stage-full-recompute.ts).
import type { tf } from '../../backend/tf.ts';
import type { SavedActivations } from '../../model/saved.ts';
import type { ScheduleRequest, SimEvent } from '../../device/timeline.ts';
import type { ModelConfig } from '../../model/config.ts';
import type { ModuleClass } from '../memory/descriptors.ts';
import { makePlan, type MemoryPlan } from '../memory/policy.ts';
import { execLayout } from '../exec/layout.ts';
import { MemoryExecutor } from '../exec/memory-executor.ts';
import { SavedLedger } from '../exec/saved-ledger.ts';
import type { RecordMemory, ParallelModel } from '../parallel-model.ts';
import type { MicroBatchState } from '../pm-phases.ts';
import type { PipeClock } from './pipe-clock.ts';
import { stageMemoryProblems } from './stage-memory-rules.ts';
import { StageFullRecompute } from './stage-full-recompute.ts';

export interface StageMemoryOptions {
  /** 'full' (whole layers replayed) or module classes recomputed ('none' or a list) */
  recompute?: string;
  /** layers per full-recompute group inside each model chunk (Megatron recompute_num_layers, uniform; default 1) */
  recomputeNumLayers?: number;
  /** module classes swapped to host ('none' or a list) */
  swap?: string;
  minOffloadSize?: number;
  offloadFraction?: number;
}

const classes = (s: string | undefined): ModuleClass[] => (!s || s === 'none' ? [] : s.split(',').map((x) => x.trim()).filter(Boolean) as ModuleClass[]);

interface Shape { plan: MemoryPlan; execs: MemoryExecutor[]; descFlops: Map<string, number>; descBytes: Map<string, number>; layerFlops: (l: number) => number }

export class StageMemory implements RecordMemory {
  /** one ledger per local rank (device) of the stage, for the whole run */
  readonly ledgers: SavedLedger[];
  private shapes = new Map<string, Shape>();
  /** full recompute (recompute: 'full'); null: selective / swap only */
  private readonly full: StageFullRecompute | null;

  constructor(readonly cfg: ModelConfig, readonly pm: ParallelModel, readonly clock: PipeClock, readonly opts: StageMemoryOptions,
    private readonly place: (req: ScheduleRequest) => SimEvent,
    /** the layers of every model chunk (full-recompute groups stay inside a chunk) */
    private readonly chunkLayers: number[][] = []) {
    const problems = stageMemoryProblems(opts.recompute ?? 'none', opts.swap ?? 'none', undefined, 'PipelineParallelModel');
    if (problems.length) throw new Error(problems.join('; '));
    this.ledgers = pm.params.map((_, i) => new SavedLedger(pm.cluster.device(i)));
    this.full = opts.recompute === 'full' ? new StageFullRecompute(pm, this.ledgers, (st, l) => this.shape(st).execs[0].mode(l)) : null;
  }

  /** Whether anything is recomputed or swapped. */
  get active(): boolean { return classes(this.opts.recompute).length + classes(this.opts.swap).length > 0; }

  attach(rank: number, rec: SavedActivations): SavedActivations { return this.ledgers[rank].attach(rec); }

  /** The plan and the per-device executors for micro-batches of b sequences of S tokens. */
  private shape(st: MicroBatchState): Shape {
    const key = `${st.b}x${st.S}`;
    let s = this.shapes.get(key);
    if (s) return s;
    const lay = execLayout(this.cfg, st.b, st.S);
    const rc = this.full ? [] : classes(this.opts.recompute), sw = classes(this.opts.swap);
    const plan = makePlan(lay.descs,
      this.full ? { recomputeGranularity: 'full', recomputeMethod: 'uniform', recomputeNumLayers: this.opts.recomputeNumLayers ?? 1 }
        : rc.length ? { recomputeGranularity: 'selective', recomputeModules: rc } : { recomputeGranularity: 'none' },
      { offloadModules: sw, minOffloadSize: this.opts.minOffloadSize, offloadFraction: this.opts.offloadFraction }, this.chunkLayers.length ? this.chunkLayers : undefined);
    const descFlops = new Map(lay.descs.map((d) => [`${d.layer}/${d.name}`, d.recomputeFlops]));
    const descBytes = new Map(lay.descs.map((d) => [`${d.layer}/${d.name}`, d.bytes]));
    const execs = this.ledgers.map((ledger, i) => new MemoryExecutor(plan, ledger, this.pm.cluster.device(i), {
      schedule: this.place,
      // the descriptor's FLOPs scaled by the entry's size on this device (TP head slice, EP received rows)
      recomputeFlops: (l, n, rec) => {
        const k = `${l}/${n}`, f = descFlops.get(k) ?? 0, b = descBytes.get(k) ?? 0;
        return b > 0 && rec.has(n) ? f * (rec.info(n).bytes / b) : f;
      },
    }));
    s = { plan, execs, descFlops, descBytes, layerFlops: (l) => lay.costs.layerForwardFlops(l) };
    this.shapes.set(key, s);
    return s;
  }

  beforeForward(st: MicroBatchState, l: number, recs: SavedActivations[], h: readonly tf.Tensor[]): void {
    if (this.full?.handles(st, l)) { this.full.beforeForward(st, l, h); return; }
    const { execs } = this.shape(st);
    recs.forEach((rec, r) => execs[r].beforeForward(l, rec));
  }

  afterForward(st: MicroBatchState, l: number, recs: SavedActivations[]): void {
    if (this.full?.handles(st, l)) { this.full.afterForward(st, l, recs); return; }
    const { execs } = this.shape(st);
    recs.forEach((rec, r) => execs[r].afterForward(l, rec, this.clock.after([r])));
  }

  /** Start reloading layer l's swapped entries of micro-batch `st` (e.g. before the head's backward). */
  prefetch(st: MicroBatchState, l: number): void {
    const recs = st.layers.get(l);
    if (!recs) return;
    const { execs } = this.shape(st);
    recs.forEach((rec, r) => execs[r].prefetch(rec, this.clock.after([r])));
  }

  /** Full recompute: replay layer l's group before its records are read. */
  replay(st: MicroBatchState, l: number): void { this.full?.replay(st, l); }

  beforeBackward(st: MicroBatchState, l: number, recs: SavedActivations[]): void {
    const { execs, layerFlops } = this.shape(st);
    recs.forEach((rec, r) => {
      const mem = execs[r], start = this.clock.after([r]);
      const swapIns = mem.prefetch(rec, start);
      for (let j = 1; j <= mem.prefetchAhead; j++) { const prev = st.layers.get(l - j); if (prev) mem.prefetch(prev[r], start); }
      this.clock.waitOn(r, swapIns);
      const rflops = mem.recompute(l, rec);
      if (rflops > 0) {
        // at the layer's forward FLOP rate without a launch of its own (as exec/stage-runner.ts)
        const dev = this.pm.cluster.device(r), f = layerFlops(l), launch = dev.spec.efficiency.launchOverhead;
        const seconds = f > 0 ? (rflops * (dev.costOf({ flops: f }) - launch)) / f : dev.costOf({ flops: rflops });
        this.clock.compute(r, `L${l} recompute`, { seconds });
      }
    });
  }

  afterBackward(st: MicroBatchState, _l: number, recs: SavedActivations[]): void {
    const { execs } = this.shape(st);
    recs.forEach((rec, r) => execs[r].forget(rec));
  }

  /** The plan of the first micro-batch shape run (single-device descriptors; null before any). */
  plan(): MemoryPlan | null { return this.shapes.values().next().value?.plan ?? null; }

  /** Names the plan wanted recomputed that had no recipe on some device (kept resident). */
  unrecomputable(): string[] { return [...new Set([...this.shapes.values()].flatMap((s) => s.execs.flatMap((e) => [...e.unrecomputable])))].sort(); }

  /** Per device: peak resident saved bytes, peak host bytes, bytes swapped out / reloaded, reload problems (swapped ≠ reloaded). */
  stats(): { peakResident: number[]; peakHost: number[]; swappedOutBytes: number[]; reloadedBytes: number[]; reloadProblems: string[] } {
    return {
      peakResident: this.ledgers.map((l) => l.peakResidentBytes), peakHost: this.ledgers.map((l) => l.peakHostBytes),
      swappedOutBytes: this.ledgers.map((l) => l.swappedOutBytes), reloadedBytes: this.ledgers.map((l) => l.reloadedBytes),
      reloadProblems: this.ledgers.flatMap((l) => l.reloadProblems()),
    };
  }
}
