// The fraction of EP all-to-all time hidden behind compute on an executed timeline (pure over the
// events): for every EP token all-to-all event (dispatch / combine and their backward, flat allToAllV
// or the hierarchical phases, labels 'ep.*' from ep/ep-moe.ts) on a device, the part of it during
// which the same device's compute stream is busy. Intra- and inter-node events count separately, as
// in src/parallel/overlap/measure.ts. PP sendRecv, DP/TP collectives and the count all-gathers are
// not EP a2a.
import { mergeIntervals, uncoveredLength, type SimEvent, type Timeline } from '../../device/timeline.ts';

export interface EPHidden {
  /** Σ EP a2a seconds over devices */
  comm: number;
  /** of which covered by compute on the same device */
  hidden: number;
  /** hidden / comm (0 when there is no EP a2a) */
  fraction: number;
  /** EP a2a events counted */
  events: number;
}

const EP_A2A = /^(allToAllV|hierA2A\.phase\d|hierCombine\.phase\d) ep\.(dispatch|combine)/;

export const isEpA2A = (e: SimEvent): boolean => e.kind === 'comm' && EP_A2A.test(e.name);

export function epCommHidden(tl: Timeline, devices: readonly number[]): EPHidden {
  const devs = new Set(devices);
  const compute = new Map<number, { start: number; end: number }[]>();
  const a2a = new Map<number, { start: number; end: number }[]>();
  let events = 0;
  for (const e of tl.events) {
    if (!devs.has(e.device)) continue;
    if (e.stream === 'compute') (compute.get(e.device) ?? compute.set(e.device, []).get(e.device)!).push({ start: e.start, end: e.end });
    else if (isEpA2A(e) && e.end > e.start) { (a2a.get(e.device) ?? a2a.set(e.device, []).get(e.device)!).push({ start: e.start, end: e.end }); events++; }
  }
  let comm = 0, exposed = 0;
  for (const [d, xs] of a2a) {
    const busy = mergeIntervals(compute.get(d) ?? []);
    for (const x of xs) { comm += x.end - x.start; exposed += uncoveredLength([x], busy); }
  }
  return { comm, hidden: comm - exposed, fraction: comm > 0 ? (comm - exposed) / comm : 0, events };
}
