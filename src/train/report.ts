// report.html of a run: SVG plots rendered server-side with vega-lite → vega (renderer 'none', no
// browser): train/validation loss, learning rate, tokens/s, gradient norm and one expert-load
// heatmap per MoE layer (expert × step bucket, colour = tokens / mean tokens; 1 = balanced).
import { writeFileSync } from 'node:fs';
import * as vega from 'vega';
import * as vl from 'vega-lite';
import type { LoadSnapshot, StepRow } from './metrics.ts';

type Spec = vl.TopLevelSpec;

/** Render one vega-lite spec to an SVG string. */
export async function renderSvg(spec: Spec): Promise<string> {
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none' });
  try { return await view.toSVG(); } finally { view.finalize(); }
}

const W = 520, H = 220;

function lineChart(title: string, values: Record<string, unknown>[], y: string, opts: { color?: string; logY?: boolean } = {}): Spec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title, width: W, height: H, data: { values },
    mark: { type: 'line', point: values.length < 60 },
    encoding: {
      x: { field: 'step', type: 'quantitative' },
      y: { field: y, type: 'quantitative', scale: opts.logY ? { type: 'log' } : { zero: false } },
      ...(opts.color ? { color: { field: opts.color, type: 'nominal' } } : {}),
    },
  } as Spec;
}

/** Average the load snapshots into at most `buckets` step ranges per layer. */
export function loadHeatmapData(loads: LoadSnapshot[], buckets = 20): { layer: number; expert: number; steps: string; order: number; load: number }[] {
  if (!loads.length) return [];
  const per = Math.ceil(loads.length / buckets);
  const out: { layer: number; expert: number; steps: string; order: number; load: number }[] = [];
  for (let b = 0; b * per < loads.length; b++) {
    const chunk = loads.slice(b * per, (b + 1) * per);
    const label = `${chunk[0].step}-${chunk[chunk.length - 1].step}`;
    for (let li = 0; li < chunk[0].layers.length; li++) {
      const { layer, relLoad } = chunk[0].layers[li];
      for (let e = 0; e < relLoad.length; e++) {
        const mean = chunk.reduce((s, c) => s + (c.layers[li]?.relLoad[e] ?? 0), 0) / chunk.length;
        out.push({ layer, expert: e, steps: label, order: b, load: Math.round(mean * 1000) / 1000 });
      }
    }
  }
  return out;
}

function heatmap(layer: number, values: ReturnType<typeof loadHeatmapData>): Spec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: `Expert load, layer ${layer} (tokens / mean)`, width: W, height: 200,
    data: { values: values.filter((v) => v.layer === layer) },
    mark: 'rect',
    encoding: {
      x: { field: 'expert', type: 'ordinal', axis: { labels: false, ticks: false, title: 'expert' } },
      y: { field: 'steps', type: 'ordinal', sort: { field: 'order' }, title: 'steps' },
      color: { field: 'load', type: 'quantitative', scale: { scheme: 'viridis' } },
    },
  } as Spec;
}

export interface ReportInput {
  title: string;
  rows: StepRow[];
  loads: LoadSnapshot[];
  summary: Record<string, unknown>;
  /** extra sections (parallel runs: memory per device, communication ledger, timeline, placement) */
  tables?: ReportTable[];
  /** extra pre-rendered SVG figures (pipeline runs: the Gantt chart) */
  figures?: { caption: string; svg: string }[];
}

export interface ReportTable { title: string; note?: string; columns: string[]; rows: (string | number)[][] }

const cell = (v: string | number) => (typeof v === 'number' ? (Number.isInteger(v) ? v.toLocaleString('en-US') : String(Number(v.toPrecision(4)))) : v);

function tableHtml(t: ReportTable): string {
  return `<h2>${esc(t.title)}</h2>${t.note ? `<p>${esc(t.note)}</p>` : ''}
<table border="1" style="border-collapse:collapse"><tr>${t.columns.map((c) => `<th>${esc(c)}</th>`).join('')}</tr>
${t.rows.map((r) => `<tr>${r.map((v) => `<td style="text-align:right">${esc(String(cell(v)))}</td>`).join('')}</tr>`).join('\n')}</table>`;
}

/** All the report's SVGs, by caption. */
export async function reportSvgs(r: ReportInput): Promise<{ caption: string; svg: string }[]> {
  const lossVals: Record<string, unknown>[] = [];
  for (const x of r.rows) {
    lossVals.push({ step: x.step, loss: x.lmLoss, series: 'train (LM)' });
    if (x.valLoss !== null) lossVals.push({ step: x.step, loss: x.valLoss, series: 'validation' });
  }
  const charts: { caption: string; spec: Spec }[] = [
    { caption: 'Train and validation loss', spec: lineChart('Loss (nats/token)', lossVals, 'loss', { color: 'series' }) },
    { caption: 'Learning rate', spec: lineChart('Learning rate', r.rows.map((x) => ({ step: x.step, lr: x.lr })), 'lr') },
    { caption: 'Throughput', spec: lineChart('Tokens per second', r.rows.map((x) => ({ step: x.step, tokensPerSecond: x.tokensPerSecond })), 'tokensPerSecond') },
    { caption: 'Gradient norm (before clipping)', spec: lineChart('Gradient norm', r.rows.map((x) => ({ step: x.step, gradNorm: x.gradNorm })), 'gradNorm', { logY: true }) },
  ];
  const heat = loadHeatmapData(r.loads);
  for (const layer of [...new Set(heat.map((h) => h.layer))]) charts.push({ caption: `Expert load heatmap, layer ${layer}`, spec: heatmap(layer, heat) });
  const out: { caption: string; svg: string }[] = [];
  for (const c of charts) out.push({ caption: c.caption, svg: await renderSvg(c.spec) });
  return out;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export async function writeReport(path: string, r: ReportInput): Promise<void> {
  const svgs = [...(r.figures ?? []), ...(await reportSvgs(r))];
  const rows = Object.entries(r.summary).map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(typeof v === 'number' ? String(Number(v.toPrecision(6))) : JSON.stringify(v))}</td></tr>`).join('\n');
  const html = `<!doctype html>
<html><head><meta charset="utf-8"><title>${esc(r.title)}</title>
<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}figure{display:inline-block;margin:1em}td{padding:2px 8px}</style>
</head><body>
<h1>${esc(r.title)}</h1>
<table>${rows}</table>
${(r.tables ?? []).map(tableHtml).join('\n')}
${svgs.map((s) => `<figure>${s.svg}<figcaption>${esc(s.caption)}</figcaption></figure>`).join('\n')}
<p>Metrics per step: metrics.csv / metrics.json next to this file.</p>
</body></html>
`;
  writeFileSync(path, html);
}
