// Timeline measurements of an executed overlap step (pure over the timeline's events):
// step time, pipeline bubble, and the fraction of EP all-to-all time hidden behind compute.
//
// hidden = Σ over EP a2a events of (time covered by compute on the same device) / Σ EP a2a durations.
// Intra- and inter-node events are counted separately (as in the pure model's Σ comm), so a transfer
// hidden only behind the other link's transfer counts as exposed. 'steady' = the ops of the 1F1B
// steady-state micro-batch passes (tag `phase` set by the planner); PP p2p is not EP comm.
import { mergeIntervals, uncoveredLength, type SimEvent, type Timeline } from '../../device/timeline.ts';
import type { StagePlacement } from './execute.ts';

export interface HiddenStats { comm: number; hidden: number; fraction: number }

export interface StageStats {
  stage: number;
  /** mean over the stage's EP ranks of 1 − compute busy / step time (idle compute, incl. exposed a2a) */
  bubble: number;
  /** the same without the time compute waited on exposed EP a2a: the pipeline's own bubble */
  ppBubble: number;
  steady: HiddenStats;
  whole: HiddenStats;
  /**
   * Steady-state period of one F+B pass pair on EP rank 0: (end of the last steady pair − end of the
   * first) / (pairs − 1), which excludes the wait for the first gradient.
   */
  steadyPairTime: number;
}

export interface OverlapStats {
  stepTime: number;
  /** Σ over devices: compute busy, EP a2a busy, PP p2p busy (sender side) */
  computeBusy: number;
  epCommBusy: number;
  p2pBusy: number;
  /** counts of events by kind, to show both modes ran the same ops */
  computeOps: number;
  epCommOps: number;
  bubble: number;
  ppBubble: number;
  steady: HiddenStats;
  whole: HiddenStats;
  stages: StageStats[];
}

const dur = (e: SimEvent) => e.end - e.start;
const frac = (comm: number, hidden: number): HiddenStats => ({ comm, hidden, fraction: comm > 0 ? hidden / comm : 0 });

/** Hidden part of a list of same-stream events (disjoint: streams are in order) behind merged compute. */
function hiddenOf(evs: SimEvent[], compute: { start: number; end: number }[]): number {
  const sorted = [...evs].sort((a, b) => a.start - b.start);
  const len = sorted.reduce((a, e) => a + dur(e), 0);
  return len - uncoveredLength(sorted, compute);
}

export function measureOverlap(tl: Timeline, placement: StagePlacement): OverlapStats {
  const stepTime = tl.makespan;
  const byDev = new Map<number, SimEvent[]>();
  for (const e of tl.events) { const l = byDev.get(e.device); if (l) l.push(e); else byDev.set(e.device, [e]); }
  let computeBusy = 0, epCommBusy = 0, p2pBusy = 0, computeOps = 0, epCommOps = 0;
  const tot = { steady: [0, 0], whole: [0, 0] };
  const stages: StageStats[] = placement.map((ranks, stage) => {
    const st = { steady: [0, 0], whole: [0, 0] };
    let bubble = 0, ppBubble = 0, steadyPairTime = 0;
    ranks.forEach((dev, i) => {
      const evs = byDev.get(dev) ?? [];
      const comp = evs.filter((e) => e.stream === 'compute');
      const merged = mergeIntervals(comp);
      const busy = comp.reduce((a, e) => a + dur(e), 0);
      computeBusy += busy; computeOps += comp.length;
      bubble += (1 - busy / stepTime) / ranks.length;
      const epAll = evs.filter((e) => e.args.ep === 1 && (e.stream === 'comm-intra' || e.stream === 'comm-inter'));
      ppBubble += (1 - (busy + uncoveredLength(mergeIntervals(epAll), merged)) / stepTime) / ranks.length;
      for (const stream of ['comm-intra', 'comm-inter'] as const) {
        const ep = evs.filter((e) => e.stream === stream && e.args.ep === 1);
        epCommOps += ep.length;
        const steady = ep.filter((e) => e.args.phase === 'steady');
        const all = [ep.reduce((a, e) => a + dur(e), 0), hiddenOf(ep, merged)];
        const sd = [steady.reduce((a, e) => a + dur(e), 0), hiddenOf(steady, merged)];
        epCommBusy += all[0];
        for (const k of [0, 1]) { st.whole[k] += all[k]; st.steady[k] += sd[k]; }
        p2pBusy += evs.filter((e) => e.stream === stream && e.args.ep === 0 && !String(e.name).endsWith('(recv)')).reduce((a, e) => a + dur(e), 0);
      }
      if (i === 0) {
        const sc = comp.filter((e) => e.args.phase === 'steady');
        const pairEnd = new Map<number, number>();
        for (const e of sc) if (Number(e.args.pair) >= 0) pairEnd.set(Number(e.args.pair), Math.max(pairEnd.get(Number(e.args.pair)) ?? 0, e.end));
        if (pairEnd.size > 1) steadyPairTime = (Math.max(...pairEnd.values()) - Math.min(...pairEnd.values())) / (pairEnd.size - 1);
      }
    });
    for (const k of [0, 1]) { tot.whole[k] += st.whole[k]; tot.steady[k] += st.steady[k]; }
    return { stage, bubble, ppBubble, steady: frac(st.steady[0], st.steady[1]), whole: frac(st.whole[0], st.whole[1]), steadyPairTime };
  });
  return {
    stepTime, computeBusy, epCommBusy, p2pBusy, computeOps, epCommOps,
    bubble: stages.reduce((a, s) => a + s.bubble, 0) / stages.length,
    ppBubble: stages.reduce((a, s) => a + s.ppBubble, 0) / stages.length,
    steady: frac(tot.steady[0], tot.steady[1]), whole: frac(tot.whole[0], tot.whole[1]), stages,
  };
}
