// Memory executor: applies a recompute/swap plan (src/parallel/memory) to the SavedActivations of
// each layer, and charges what it does to a simulated device.
//
//   after layer l's forward:   drop(name) for 'recompute' entries (their recipes stay on the record),
//                              toHost(name) for 'swap' entries (D2H on the host-copy stream; H2D
//                              prefetches use host-copy-in: the host link is full duplex)
//   before layer l's backward: recompute the dropped entries at once (one compute op, Megatron's
//                              "recompute just before backward"), reload l's swapped entries if no
//                              prefetch did, and prefetch layer l−1's (H2D overlapping l's backward)
// Full-layer recomputation is a stage-runner concern (it replays the forward); `mode(l)` tells it.
// Recipes come from the modules (every non-residual entry has one, see docs/model.md); the
// executor never invents numbers, so gradients are the no-recompute ones (tests/recompute-*).
import type { SimDevice } from '../../device/device.ts';
import { hostCopyTime } from '../../device/cost.ts';
import type { ScheduleRequest, SimEvent } from '../../device/timeline.ts';
import type { SavedActivations } from '../../model/saved.ts';
import type { MemoryPlan } from '../memory/policy.ts';
import type { SavedLedger } from './saved-ledger.ts';
import { fallbackRecipe } from './recipes.ts';
import { forwardPhase, RELEASE_ON } from '../memory/lifecycle.ts';

export type LayerMode = 'none' | 'full' | 'full-inner';

export interface LayerActions { recompute: string[]; swap: string[]; mode: LayerMode }

/** Per-layer actions of a plan (pure). 'full' keeps the layer input, 'full-inner' replays with the group. */
export function layerActions(plan: MemoryPlan | null): Map<number, LayerActions> {
  const out = new Map<number, LayerActions>();
  if (!plan) return out;
  const full = new Set(plan.fullLayers);
  for (const e of plan.entries) {
    if (!out.has(e.layer)) out.set(e.layer, { recompute: [], swap: [], mode: 'none' });
    const a = out.get(e.layer)!;
    if (full.has(e.layer)) {
      // the group's first layer keeps its input (attnNorm.x 'keep'); inner layers keep nothing
      if (/^attnNorm\.x$/.test(e.name)) a.mode = e.decision === 'keep' ? 'full' : 'full-inner';
      continue;
    }
    if (e.decision === 'recompute') a.recompute.push(e.name);
    else if (e.decision === 'swap') a.swap.push(e.name);
  }
  return out;
}

// forwardPhase / RELEASE_ON: the release points, shared with the planner's lifecycle replay.
export { forwardPhase, RELEASE_ON };

export interface MemoryExecutorOptions {
  /** FLOPs to rebuild entry `name` of layer `layer` (from the descriptors; `rec`: the record, whose entry sizes may differ per device). */
  recomputeFlops?: (layer: number, name: string, rec: SavedActivations) => number;
  /** How the host copies are put on the timeline (default `device.timeline.schedule`; a pipeline stage in
   *  overlap mode passes its view's, which records the copies of an F/B pair for gap-fill.ts). */
  schedule?: (req: ScheduleRequest) => SimEvent;
}

export class MemoryExecutor {
  private actions: Map<number, LayerActions>;
  private swapOutEvents = new Map<SavedActivations, Map<string, SimEvent>>();
  private swapInEvents = new Map<SavedActivations, SimEvent[]>();
  private droppedNames = new Map<SavedActivations, string[]>();
  private swappedNames = new Map<SavedActivations, string[]>();
  private restoreOnSave = new Map<SavedActivations, SavedActivations['onSave']>();
  /** Names the plan wanted recomputed but that have no recipe (kept resident). */
  readonly unrecomputable = new Set<string>();

  /** Layers whose swapped tensors are reloaded when a layer's backward starts (plan.prefetchAhead). */
  readonly prefetchAhead: number;

  constructor(plan: MemoryPlan | null, readonly ledger: SavedLedger, readonly device: SimDevice | null, readonly opts: MemoryExecutorOptions = {}) {
    this.actions = layerActions(plan);
    this.prefetchAhead = plan?.prefetchAhead ?? 1;
  }

  mode(layer: number): LayerMode { return this.actions.get(layer)?.mode ?? 'none'; }

  /**
   * Call before layer `layer`'s forward: entries are released as soon as the forward has moved on to a
   * later sub-module of the block (see `forwardPhase`), not only at the end of the layer, so the
   * forward transient is one sub-module's tensors rather than the whole layer's.
   */
  beforeForward(layer: number, rec: SavedActivations): void {
    const a = this.actions.get(layer);
    if (!a || a.mode !== 'none' || (!a.recompute.length && !a.swap.length)) return;
    const prev = rec.onSave;
    let phase = 0;
    const saved = new Set<string>();
    this.restoreOnSave.set(rec, prev);
    rec.onSave = (r, info) => {
      prev?.(r, info);
      saved.add(info.name);
      phase = Math.max(phase, forwardPhase(info.name));
      this.release(layer, r, (n) => forwardPhase(n) < phase || (RELEASE_ON[n] !== undefined && saved.has(RELEASE_ON[n])), false);
    };
  }

  private put(req: ScheduleRequest): SimEvent { return this.opts.schedule ? this.opts.schedule(req) : this.device!.timeline.schedule(req); }

  /** Drop / offload layer `layer`'s remaining planned entries right after its forward (event(s) `fwd`). */
  afterForward(layer: number, rec: SavedActivations, fwd: SimEvent | readonly SimEvent[] | null): void {
    const fwdEvents: SimEvent[] = fwd === null ? [] : Array.isArray(fwd) ? [...(fwd as readonly SimEvent[])] : [fwd as SimEvent];
    if (this.restoreOnSave.has(rec)) { rec.onSave = this.restoreOnSave.get(rec)!; this.restoreOnSave.delete(rec); }
    const a = this.actions.get(layer);
    if (!a || a.mode !== 'none') return;
    this.release(layer, rec, () => true);
    const outs = new Map<string, SimEvent>();
    for (const name of this.swappedNames.get(rec) ?? []) {
      const bytes = this.ledger.bytesOf(rec.info(name));
      if (this.device) outs.set(name, this.put({
        device: this.device.rank, stream: 'host-copy', name: `swap-out ${rec.owner}:${name}`, kind: 'copy',
        duration: hostCopyTime(bytes, this.device.spec), after: fwdEvents, args: { bytes },
      }));
    }
    this.swapOutEvents.set(rec, outs);
  }

  /** Apply the layer's drops / host moves to the resident entries selected by `which`. */
  private release(layer: number, rec: SavedActivations, which: (name: string) => boolean, final = true): void {
    const a = this.actions.get(layer)!;
    if (!this.droppedNames.has(rec)) this.droppedNames.set(rec, []);
    if (!this.swappedNames.has(rec)) this.swappedNames.set(rec, []);
    for (const name of a.recompute) {
      if (!which(name) || !rec.has(name) || rec.info(name).state !== 'resident') continue;
      this.ledger.expectDrop(rec, name);
      // the module's recipe, else ours (recipes.ts); without either the entry stays resident
      try { rec.drop(name); } catch {
        const recipe = fallbackRecipe(name);
        // (mid-forward, the block may not have registered the recipe yet: retried later)
        if (!recipe) { this.ledger.forgetDrop(rec, name); if (final) this.unrecomputable.add(name); continue; }
        rec.drop(name, recipe);
      }
      this.droppedNames.get(rec)!.push(name);
    }
    for (const name of a.swap) {
      if (!which(name) || !rec.has(name) || rec.info(name).state !== 'resident') continue;
      this.ledger.expectSwap(rec, name);
      rec.toHost(name);
      this.swappedNames.get(rec)!.push(name);
    }
  }

  /**
   * Reload `rec`'s swapped entries now (a prefetch); returns the H2D events (idempotent). The copies
   * run on the H2D stream (`host-copy-in`; the link is full duplex), after their D2H and after
   * `after` (the compute that reached the point where the prefetch is issued).
   */
  prefetch(rec: SavedActivations, after: readonly SimEvent[] = []): SimEvent[] {
    if (this.swapInEvents.has(rec)) return this.swapInEvents.get(rec)!;
    const evs: SimEvent[] = [];
    for (const info of rec.list()) {
      if (info.state !== 'host') continue;
      rec.get(info.name); // the reload (the ledger counts it)
      const out = this.swapOutEvents.get(rec)?.get(info.name);
      const bytes = this.ledger.bytesOf(info);
      if (this.device) evs.push(this.put({
        device: this.device.rank, stream: 'host-copy-in', name: `swap-in ${rec.owner}:${info.name}`, kind: 'copy',
        duration: hostCopyTime(bytes, this.device.spec), after: out ? [out, ...after] : [...after], args: { bytes },
      }));
    }
    this.swapInEvents.set(rec, evs);
    return evs;
  }

  /**
   * Before layer `layer`'s backward: returns the FLOPs of its dropped entries (charged as one op).
   * Recomputation is lazy: SavedActivations.get rebuilds a dropped entry when the backward of its
   * consumer asks for it (Megatron: recompute right before the module's backward), and the module
   * backwards release every entry after its last read (`SavedActivations.release`), so recomputed
   * tensors of different sub-modules are not resident together (memory/lifecycle.ts replays this).
   */
  recompute(layer: number, rec: SavedActivations): number {
    const names = this.droppedNames.get(rec) ?? [];
    return names.reduce((a, n) => a + (this.opts.recomputeFlops?.(layer, n, rec) ?? 0), 0);
  }

  /** Forget a record (after its backward disposed it). */
  forget(rec: SavedActivations): void {
    this.swapOutEvents.delete(rec);
    this.swapInEvents.delete(rec);
    this.droppedNames.delete(rec);
    this.swappedNames.delete(rec);
    this.ledger.forget(rec);
  }
}

/**
 * A `MoEGPT.onForwardDone` hook applying a plan's selective drops and host swaps to the records of a
 * plain `forwardBackward` (no device, no timeline; full-layer recompute needs the ChunkRunner). The
 * records are named 'layers.<l>'; SavedActivations.get brings entries back on demand in backward.
 */
export function planHook(plan: MemoryPlan, ledger?: SavedLedger): (records: SavedActivations[]) => void {
  const acts = layerActions(plan);
  return (records) => {
    for (const rec of records) {
      const m = /^layers\.(\d+)$/.exec(rec.owner);
      const a = m ? acts.get(Number(m[1])) : undefined;
      if (!a || a.mode !== 'none') continue;
      for (const name of a.recompute) {
        if (!rec.has(name)) continue;
        ledger?.expectDrop(rec, name);
        try { rec.drop(name); } catch {
          const recipe = fallbackRecipe(name);
          if (recipe) rec.drop(name, recipe); else ledger?.forgetDrop(rec, name);
        }
      }
      for (const name of a.swap) if (rec.has(name)) { ledger?.expectSwap(rec, name); rec.toHost(name); }
    }
  };
}
