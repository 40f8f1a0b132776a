// report.html: vega-lite SVGs rendered without a browser are well-formed XML with <svg> roots.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { reportSvgs, writeReport, loadHeatmapData } from '../src/train/report.ts';
import type { StepRow, LoadSnapshot } from '../src/train/metrics.ts';

const rows: StepRow[] = Array.from({ length: 30 }, (_, i) => ({
  step: i + 1, loss: 5 - i * 0.1, lmLoss: 5 - i * 0.1, auxLoss: 0.01, zLoss: 0.001, gradNorm: 1 / (i + 1), lr: 1e-3,
  tokensPerSecond: 1000 + i, localMfu: 0.01, stepSeconds: 0.1, expertLoadMaxOverMean: 2, expertLoadCv: 0.5, expertDropRate: 0,
  valLoss: i % 10 === 9 ? 5 - i * 0.09 : null, layers: [], tfBytes: 1, tfTensors: 1, rssBytes: 1,
}));
const loads: LoadSnapshot[] = rows.map((r) => ({ step: r.step, layers: [1, 2].map((layer) => ({ layer, relLoad: Array.from({ length: 16 }, (_, e) => 1 + Math.sin(e + r.step) * 0.5) })) }));

/** A strict-enough XML well-formedness check: balanced tags, one root, quoted attributes. */
function assertWellFormed(xml: string, what: string) {
  const body = xml.replace(/<\?xml[^>]*\?>/, '').trim();
  assert.ok(body.startsWith('<svg'), `${what}: root is <svg>`);
  const stack: string[] = [];
  const re = /<(\/?)([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(\/?)>|<!--[\s\S]*?-->|<!\[CDATA\[[\s\S]*?\]\]>/g;
  let m: RegExpExecArray | null, last = 0, roots = 0;
  while ((m = re.exec(body))) {
    const between = body.slice(last, m.index);
    assert.not.ok(/[<>]/.test(between), `${what}: stray markup near ${m.index}: ${between.slice(0, 60)}`);
    assert.not.ok(/&(?!(amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)/.test(between), `${what}: bad entity`);
    last = re.lastIndex;
    if (!m[2]) continue;
    if (m[1]) assert.is(stack.pop(), m[2], `${what}: closing </${m[2]}>`);
    else if (!m[4]) { if (stack.length === 0) roots++; stack.push(m[2]); }
    else if (stack.length === 0) roots++;
  }
  assert.is(stack.length, 0, `${what}: unclosed ${stack.join(',')}`);
  assert.is(roots, 1, `${what}: one root element`);
  assert.is(body.slice(last).trim(), '', `${what}: trailing text`);
}

test('every report chart is a well-formed SVG document', async () => {
  const svgs = await reportSvgs({ title: 't', rows, loads, summary: {} });
  assert.is(svgs.length, 6); // loss, lr, tokens/s, grad norm, 2 heatmaps
  for (const s of svgs) assertWellFormed(s.svg, s.caption);
  assert.ok(svgs[4].svg.includes('<rect') || svgs[4].svg.includes('<path'), 'heatmap has cells');
});

test('heatmap data: at most 20 step buckets, mean of relative loads', () => {
  const d = loadHeatmapData(loads, 20);
  const buckets = new Set(d.map((x) => x.steps));
  assert.ok(buckets.size <= 20 && buckets.size >= 10);
  assert.is(d.length, buckets.size * 2 * 16);
});

test('report.html embeds the SVGs and the summary', async () => {
  const p = join(mkdtempSync(join(tmpdir(), 'ultramoe-rep-')), 'report.html');
  await writeReport(p, { title: 'run <x>', rows, loads, summary: { lossEnd: 2.1 } });
  const html = readFileSync(p, 'utf8');
  assert.is((html.match(/<svg/g) ?? []).length, 6);
  assert.ok(html.includes('run &lt;x&gt;') && html.includes('lossEnd'));
});

test.run();
