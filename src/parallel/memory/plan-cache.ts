// Memoised planning: the memory planner is a pure function of the saved-activation descriptors and
// its options, and the trainer asks for the same plan at every optimizer step (same shapes, config,
// budget and device), so the greedy search (seconds on `tiny`) runs once. A plan is cached only when
// every input is plain data or carries a fingerprint: a `StageTiming` (functions of the device's cost
// model) is keyed by its `key`, and without one the call is not cached.
//
//   const r = cachedPlanMemory(descs, { ...costModel, budgetBytes });  // same result as planMemory
//   planCacheStats();                                                 // { hits, misses, size }
import type { SavedActivationDesc } from './descriptors.ts';
import { planMemory, type PlannerOptions, type PlannerResult } from './planner.ts';

const MAX_ENTRIES = 32;
const cache = new Map<string, PlannerResult>();
let hits = 0, misses = 0;

/** The cache key of a planner call, or null when an input has no fingerprint (a timing without `key`). */
export function planKey(descs: readonly SavedActivationDesc[], o: PlannerOptions): string | null {
  if (o.timing && o.timing.key === undefined) return null;
  const { timing, forwardFlops, ...rest } = o;
  return JSON.stringify({ descs, rest, forwardFlops: forwardFlops ? [...forwardFlops] : null, timing: timing?.key ?? null });
}

/** `planMemory(descs, o)`, computed once per distinct input (a copy of the cached result each time). */
export function cachedPlanMemory(descs: SavedActivationDesc[], o: PlannerOptions): PlannerResult {
  const key = planKey(descs, o);
  if (key === null) { misses++; return planMemory(descs, o); }
  let r = cache.get(key);
  if (r) { hits++; cache.delete(key); cache.set(key, r); } // most recently used last
  else {
    misses++;
    r = planMemory(descs, o);
    cache.set(key, r);
    if (cache.size > MAX_ENTRIES) cache.delete(cache.keys().next().value!);
  }
  return structuredClone(r);
}

export function planCacheStats(): { hits: number; misses: number; size: number } { return { hits, misses, size: cache.size }; }

export function clearPlanCache(): void { cache.clear(); hits = 0; misses = 0; }
