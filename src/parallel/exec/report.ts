// Accounting of an executed step, all read from the cluster's timeline and ledgers (nothing estimated):
//   bubble fraction     (step − mean busy)/mean busy over the pipeline ranks' compute streams, the
//                       papers' (p−1)/m measured against the ideal time (same definition as the pure
//                       simulator in src/parallel/pipeline/simulate.ts)
//   step time           the timeline's makespan
//   peak memory         per device and category (HBM ledger), plus the node host ledgers ('swapped')
//   Gantt chart         SVG (vega-lite → vega, renderer 'none'), one row per pipeline rank, F/B/R/swap
//   Perfetto trace      the cluster's Chrome trace
import * as vega from 'vega';
import * as vl from 'vega-lite';
import type { Cluster } from '../../device/cluster.ts';
import { mergeIntervals } from '../../device/timeline.ts';

export interface BubbleReport {
  stepTime: number;
  /** compute busy seconds per pipeline rank */
  busy: number[];
  bubbleFraction: number;
}

/** Bubble of the executed timeline over the devices `ranks` (compute stream only). */
export function measureBubble(cluster: Cluster, ranks: number[]): BubbleReport {
  const evs = cluster.timeline.events.filter((e) => e.stream === 'compute' && ranks.includes(e.device));
  const t0 = Math.min(...evs.map((e) => e.start)), t1 = Math.max(...evs.map((e) => e.end));
  const busy = ranks.map((d) => mergeIntervals(evs.filter((e) => e.device === d)).reduce((a, x) => a + x.end - x.start, 0));
  const mean = busy.reduce((a, b) => a + b, 0) / busy.length;
  return { stepTime: t1 - t0, busy, bubbleFraction: (t1 - t0 - mean) / mean };
}

/** Peak bytes by memory category per device (HBM), e.g. {activations, weights, gradients, comm}. */
export function peakByCategory(cluster: Cluster, ranks: number[]): Record<string, number>[] {
  return ranks.map((d) => {
    const snap = cluster.device(d).hbm.snapshot();
    const out: Record<string, number> = { total: snap.peak };
    for (const [c, v] of Object.entries(snap.byCategory)) out[c] = v.peak;
    return out;
  });
}

/** Peak host bytes in category 'swapped' per node. */
export function hostSwappedPeak(cluster: Cluster): number[] { return cluster.hosts.map((h) => h.peakBy('swapped')); }

/** Exposed host-copy (swap) seconds per device: copy time not covered by compute. */
export function exposedSwap(cluster: Cluster, ranks: number[]): number[] {
  const s = cluster.timeline.commSummary();
  return ranks.map((d) => s.find((x) => x.device === d)?.exposedHostCopy ?? 0);
}

/** Gantt chart of the executed step as SVG: one row per rank and stream (compute, host-copy, p2p). */
export async function ganttSvg(cluster: Cluster, ranks: number[], title = 'pipeline step (executed timeline)'): Promise<string> {
  const kindOf = (n: string) => (n.startsWith('F ') ? 'forward' : n.startsWith('B ') ? 'backward' : n.startsWith('R ') ? 'recompute'
    : n.startsWith('swap') ? 'swap' : n.startsWith('sendRecv') ? 'p2p' : 'other');
  const mbOf = (n: string) => /mb(\d+)/.exec(n)?.[1] ?? '';
  const values = cluster.timeline.events.filter((e) => ranks.includes(e.device) && e.end > e.start).map((e) => ({
    row: `rank ${ranks.indexOf(e.device)} ${e.stream === 'compute' ? 'compute' : e.stream === 'host-copy' ? 'swap-out' : e.stream === 'host-copy-in' ? 'swap-in' : 'p2p'}`,
    start: e.start * 1e6, end: e.end * 1e6, kind: kindOf(e.name), mb: mbOf(e.name), name: e.name,
  }));
  const spec: vl.TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title, width: 900, height: { step: 22 }, data: { values },
    layer: [
      { mark: { type: 'bar', stroke: 'white', strokeWidth: 0.3 },
        encoding: {
          y: { field: 'row', type: 'nominal', title: null, sort: null },
          x: { field: 'start', type: 'quantitative', title: 'simulated time (µs)' }, x2: { field: 'end' },
          color: { field: 'kind', type: 'nominal', scale: { domain: ['forward', 'backward', 'recompute', 'swap', 'p2p', 'other'],
            range: ['#4c78a8', '#f58518', '#e45756', '#72b7b2', '#9d9d9d', '#bab0ac'] } },
          tooltip: [{ field: 'name' }],
        } },
      { mark: { type: 'text', fontSize: 7, dx: 2, align: 'left', color: 'white' },
        transform: [{ filter: "datum.kind === 'forward' || datum.kind === 'backward'" }],
        encoding: { y: { field: 'row', type: 'nominal', sort: null }, x: { field: 'start', type: 'quantitative' }, text: { field: 'mb' } } },
    ],
  };
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none' });
  try { return await view.toSVG(); } finally { view.finalize(); }
}
