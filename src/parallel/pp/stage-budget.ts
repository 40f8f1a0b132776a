// --memory-budget for pipeline stages that run TP/DP/EP (train/pp-parallel.ts). Pure (no tfjs).
//
// The single-device planner (parallel/memory/planner.ts) predicts one device's peak from its own
// cost model; inside the stages a device's saved bytes depend on its EP token share, TP slice and the
// interleaved schedule, which that model does not see. So the stage planner predicts by measurement:
//   1. levels (budgetLevels): level 0 = no plan; level k adds the k-th supported recompute class
//      (stage-memory-rules.ts STAGE_RECOMPUTE_CLASSES) in order of saved bytes per recompute FLOP
//      (single-device descriptors of the micro-batch shape, zero-FLOP classes first); the last level
//      also swaps the classes that cannot be recomputed in stages (residual, router, permute, other);
//   2. the caller runs the step at each level (same weights and batch, results discarded) until every
//      stage fits, recording each device's activation peak (the predicted peaks);
//   3. chooseStageLevels: per stage, the lowest level whose max device peak fits the budget (fewest
//      recomputed classes = least added time; levels are nested); a stage that fits at no level is
//      an error naming its most loaded device, that peak and the best achievable.
// The executed step is then checked against the budget (pp-parallel.ts).
import type { ModelConfig } from '../../model/config.ts';
import { execLayout } from '../exec/layout.ts';
import { MODULE_CLASSES, type ModuleClass } from '../memory/descriptors.ts';
import { STAGE_RECOMPUTE_CLASSES } from './stage-memory-rules.ts';
import type { StageMemoryOptions } from './stage-memory.ts';

export interface BudgetLevel { recompute: ModuleClass[]; swap: ModuleClass[] }

export const levelOptions = (l: BudgetLevel): StageMemoryOptions => ({ recompute: l.recompute.length ? l.recompute.join(',') : 'none', swap: l.swap.length ? l.swap.join(',') : 'none' });
export const levelName = (l: BudgetLevel): string => `recompute ${l.recompute.join(',') || 'none'}; swap ${l.swap.join(',') || 'none'}`;

/** Nested candidate plans for micro-batches of b sequences of S tokens (level 0: none). */
export function budgetLevels(cfg: ModelConfig, b: number, S: number): BudgetLevel[] {
  const descs = execLayout(cfg, b, S).descs;
  const per = new Map<ModuleClass, { bytes: number; flops: number }>();
  for (const d of descs) { const x = per.get(d.module) ?? { bytes: 0, flops: 0 }; x.bytes += d.bytes; x.flops += d.recomputeFlops; per.set(d.module, x); }
  const ratio = (c: ModuleClass) => { const x = per.get(c)!; return x.flops > 0 ? x.bytes / x.flops : Infinity; };
  const rc = STAGE_RECOMPUTE_CLASSES.filter((c) => (per.get(c)?.bytes ?? 0) > 0).sort((a, b2) => ratio(b2) - ratio(a) || per.get(b2)!.bytes - per.get(a)!.bytes);
  const levels: BudgetLevel[] = rc.map((_, k) => ({ recompute: rc.slice(0, k), swap: [] }));
  levels.push({ recompute: rc, swap: [] });
  const rest = MODULE_CLASSES.filter((c) => !STAGE_RECOMPUTE_CLASSES.includes(c) && (per.get(c)?.bytes ?? 0) > 0);
  if (rest.length) levels.push({ recompute: rc, swap: rest });
  return levels;
}

export interface StageChoice { stage: number; level: number; plan: string; devices: number[]; predictedPeaks: number[] }

/**
 * Per stage the lowest level whose device activation peaks all fit `budget`.
 * peaks[k][s][i]: activation peak of local device i of stage s measured at level k (levels 0..peaks.length−1).
 * devices[s][i]: global device id. Throws naming the device when a stage fits at no measured level.
 */
export function chooseStageLevels(budget: number, levels: BudgetLevel[], peaks: number[][][], devices: number[][]): StageChoice[] {
  return devices.map((devs, s) => {
    const k = peaks.findIndex((lv) => Math.max(...lv[s]) <= budget);
    if (k < 0) {
      const none = peaks[0][s], worst = none.indexOf(Math.max(...none));
      let best = 0;
      for (let j = 1; j < peaks.length; j++) if (Math.max(...peaks[j][s]) < Math.max(...peaks[best][s])) best = j;
      const bp = peaks[best][s], bd = bp.indexOf(Math.max(...bp));
      throw new Error(`--memory-budget ${budget} B cannot be met: stage ${s} device ${devs[worst]} has an activation peak of ${none[worst]} B without a plan; ` +
        `the best achievable with the classes supported inside stages (${levelName(levels[best])}) is ${bp[bd]} B on device ${devs[bd]}`);
    }
    return { stage: s, level: k, plan: levelName(levels[k]), devices: devs, predictedPeaks: peaks[k][s] };
  });
}
