// Driver order shared by the pipeline executors (exec/pipeline-executor.ts: one device per stage;
// pp/pp-driver.ts: a group of devices per stage): one process plays every rank, and at each step the
// rank whose next action can start earliest in simulated time goes (ties to the lower rank).
import type { Action } from '../pipeline/schedule.ts';

/** The rank with the earliest ready time (null = that rank cannot run now), or -1 if none can. */
export function earliestReadyRank(p: number, readyTime: (r: number) => number | null): { rank: number; t: number } {
  let rank = -1, t = Infinity;
  for (let r = 0; r < p; r++) {
    const x = readyTime(r);
    if (x !== null && x < t) { rank = r; t = x; }
  }
  return { rank, t };
}

/** True once every rank has run its whole action list. */
export const allDone = (pc: number[], ranks: Action[][]): boolean => pc.every((i, r) => i >= ranks[r].length);

/** The error thrown when no rank can run but some still have actions. */
export function deadlockError(pc: number[], ranks: Action[][]): Error {
  return new Error(`pipeline deadlock: ${pc.map((i, r) => `rank ${r} at ${JSON.stringify(ranks[r][i])}`).join('; ')}`);
}
