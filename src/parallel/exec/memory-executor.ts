// Memory executor: applies a recompute/swap plan (src/parallel/memory) to the SavedActivations of
// each layer, and charges what it does to a simulated device.
//
//   after layer l's forward:   drop(name) for 'recompute' entries (their recipes stay on the record),
//                              toHost(name) for 'swap' entries (D2H on the host-copy stream)
//   before layer l's backward: recompute the dropped entries at once (one compute op, Megatron's
//                              "recompute just before backward"), reload l's swapped entries if no
//                              prefetch did, and prefetch layer l−1's (H2D overlapping l's backward)
// Full-layer recomputation is a stage-runner concern (it replays the forward); `mode(l)` tells it.
// Recipes come from the modules (every non-residual entry has one, see docs/model.md); the
// executor never invents numbers, so gradients are the no-recompute ones (tests/recompute-*).
import type { SimDevice } from '../../device/device.ts';
import { hostCopyTime } from '../../device/cost.ts';
import type { SimEvent } from '../../device/timeline.ts';
import type { SavedActivations } from '../../model/saved.ts';
import type { MemoryPlan } from '../memory/policy.ts';
import type { SavedLedger } from './saved-ledger.ts';
import { fallbackRecipe } from './recipes.ts';

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

export interface MemoryExecutorOptions {
  /** FLOPs to rebuild entry `name` of layer `layer` (from the descriptors). */
  recomputeFlops?: (layer: number, name: string) => number;
}

export class MemoryExecutor {
  private actions: Map<number, LayerActions>;
  private swapOutEvents = new Map<SavedActivations, Map<string, SimEvent>>();
  private swapInEvents = new Map<SavedActivations, SimEvent[]>();
  private droppedNames = new Map<SavedActivations, string[]>();
  /** Names the plan wanted recomputed but that have no recipe (kept resident). */
  readonly unrecomputable = new Set<string>();

  constructor(plan: MemoryPlan | null, readonly ledger: SavedLedger, readonly device: SimDevice | null, readonly opts: MemoryExecutorOptions = {}) {
    this.actions = layerActions(plan);
  }

  mode(layer: number): LayerMode { return this.actions.get(layer)?.mode ?? 'none'; }

  /** Drop / offload layer `layer`'s planned entries right after its forward (event `fwd`). */
  afterForward(layer: number, rec: SavedActivations, fwd: SimEvent | null): void {
    const a = this.actions.get(layer);
    if (!a || a.mode !== 'none') return;
    const dropped: string[] = [];
    for (const name of a.recompute) {
      if (!rec.has(name) || rec.info(name).state !== 'resident') continue;
      this.ledger.expectDrop(rec, name);
      // the module's recipe, else ours (recipes.ts); without either the entry stays resident
      const recipe = fallbackRecipe(name);
      try { rec.drop(name, undefined); } catch {
        if (!recipe) { this.ledger.forgetDrop(rec, name); this.unrecomputable.add(name); continue; }
        rec.drop(name, recipe);
      }
      dropped.push(name);
    }
    this.droppedNames.set(rec, dropped);
    const outs = new Map<string, SimEvent>();
    for (const name of a.swap) {
      if (!rec.has(name) || rec.info(name).state !== 'resident') continue;
      const bytes = this.ledger.bytesOf(rec.info(name));
      this.ledger.expectSwap(rec, name);
      rec.toHost(name);
      if (this.device) outs.set(name, this.device.timeline.schedule({
        device: this.device.rank, stream: 'host-copy', name: `swap-out ${rec.owner}:${name}`, kind: 'copy',
        duration: hostCopyTime(bytes, this.device.spec), after: fwd ? [fwd] : [], args: { bytes },
      }));
    }
    this.swapOutEvents.set(rec, outs);
  }

  /** Reload `rec`'s swapped entries now (a prefetch); returns the H2D events (idempotent). */
  prefetch(rec: SavedActivations): SimEvent[] {
    if (this.swapInEvents.has(rec)) return this.swapInEvents.get(rec)!;
    const evs: SimEvent[] = [];
    for (const info of rec.list()) {
      if (info.state !== 'host') continue;
      rec.get(info.name); // the reload (the ledger counts it)
      const out = this.swapOutEvents.get(rec)?.get(info.name);
      const bytes = this.ledger.bytesOf(info);
      if (this.device) evs.push(this.device.timeline.schedule({
        device: this.device.rank, stream: 'host-copy', name: `swap-in ${rec.owner}:${info.name}`, kind: 'copy',
        duration: hostCopyTime(bytes, this.device.spec), after: out ? [out] : [], args: { bytes },
      }));
    }
    this.swapInEvents.set(rec, evs);
    return evs;
  }

  /** Rebuild the dropped entries of layer `layer` (before its backward); returns their FLOPs. */
  recompute(layer: number, rec: SavedActivations): number {
    let flops = 0;
    for (const name of this.droppedNames.get(rec) ?? []) {
      if (rec.info(name).state === 'dropped') rec.get(name);
      flops += this.opts.recomputeFlops?.(layer, name) ?? 0;
    }
    return flops;
  }

  /** Forget a record (after its backward disposed it). */
  release(rec: SavedActivations): void {
    this.swapOutEvents.delete(rec);
    this.swapInEvents.delete(rec);
    this.droppedNames.delete(rec);
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
