// `ultramoe train --parallel` end to end on a shrunken tiny model: invalid layouts and flags are all
// listed before any work; a short ep=4 run with dynamic placement reports per-device memory, the
// communication ledger and the simulated step time, and writes the Perfetto and expert-load traces.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const cli = (...args: string[]) => {
  const r = spawnSync(process.execPath, ['bin/ultramoe.mjs', ...args], { encoding: 'utf8', env: { ...process.env, FORCE_COLOR: '0' } });
  return { code: r.status, out: r.stdout, err: r.stderr, last: r.stdout.trim().split('\n').pop() ?? '' };
};
const small = JSON.stringify({ hiddenSize: 32, numLayers: 2, numHeads: 2, denseIntermediateSize: 64,
  moe: { numExperts: 8, topk: 2, expertHiddenSize: 16 }, mla: { qLoraRank: 16, kvLoraRank: 16, qkNopeHeadDim: 8, qkRopeHeadDim: 8, vHeadDim: 8 } });
const dir = join(mkdtempSync(join(tmpdir(), 'ultramoe-pcli-')), 'run');

test('train --parallel: invalid layouts and flags all listed (exit 2); a short ep=4 run reports memory and communication', () => {
  const bad = cli('train', '--override', small, '--parallel', 'tp=3,ep=3,pp=2', '--dispatcher', 'ring', '--placement', 'dynamic', '--redundant-slots=-1', '--out', dir);
  assert.is(bad.code, 2);
  for (const s of ['--dispatcher', 'numExperts 8 is not divisible by ep=3', 'numHeads 2 is not divisible by tp=3', '--placement applies to', '--redundant-slots']) assert.ok(bad.err.includes(s), `mentions ${s}:\n${bad.err}`);
  const bad2 = cli('train', '--override', small, '--parallel', 'tp=3,ep=3', '--dispatcher', 'ring', '--out', dir);
  for (const s of ['--dispatcher', 'numExperts 8 is not divisible by ep=3']) assert.ok(bad2.err.includes(s), `mentions ${s}:\n${bad2.err}`);
  const bad3 = cli('train', '--override', small, '--parallel', 'ep=2', '--sequence-parallel', '--out', dir);
  assert.is(bad3.code, 2);
  assert.ok(bad3.err.includes('--sequence-parallel needs tp > 1'), bad3.err);
  assert.not.ok(existsSync(dir));
  const pdir = `${dir}-parallel`;
  const r = cli('train', '--override', small, '--parallel', 'ep=4', '--steps', '2', '--batch', '4', '--seq', '16', '--eval-every', '0', '--eval-batches', '1',
    '--placement', 'dynamic', '--placement-period', '1', '--trace', join(pdir, 'trace.json'), '--trace-loads', join(pdir, 'loads.json'), '--out', pdir, '--json');
  assert.is(r.code, 0, r.err);
  const s = JSON.parse(r.last);
  assert.is(s.perDevicePeakMemoryBytes.length, 4);
  assert.ok(s.commBytes.byKind.allToAllV > 0 && s.commBytes.byKind.allReduce > 0, JSON.stringify(s.commBytes));
  assert.ok(s.simulatedStepSeconds > 0);
  for (const k of ['weights', 'gradients', 'optimizer', 'activations']) assert.ok(s.parallel.perDevicePeakMemoryByCategory[0][k] > 0, k);
  assert.ok(readFileSync(s.report, 'utf8').includes('Communication ledger'));
  assert.is(JSON.parse(readFileSync(join(pdir, 'loads.json'), 'utf8')).steps.length, 2);
  assert.ok(JSON.parse(readFileSync(join(pdir, 'trace.json'), 'utf8')).traceEvents.length > 0);
});

test('train --parallel pp=2 --recompute: per-device memory by category, bubble, Gantt SVG in the report, Perfetto trace', () => {
  const pdir = `${dir}-pp`;
  const r = cli('train', '--override', small, '--parallel', 'pp=2', '--micro-batches', '2', '--recompute', 'core_attn', '--steps', '2', '--batch', '2', '--seq', '16',
    '--eval-every', '0', '--eval-batches', '1', '--device-memory', '64MiB', '--trace', join(pdir, 'trace.json'), '--out', pdir, '--json');
  assert.is(r.code, 0, r.err);
  const s = JSON.parse(r.last);
  assert.is(s.pipeline.perDevicePeakByCategory.length, 2);
  for (const k of ['weights', 'gradients', 'optimizer', 'activations', 'total']) assert.ok(s.pipeline.perDevicePeakByCategory[1][k] > 0, k);
  assert.ok(s.bubbleFraction > 0 && s.simulatedStepSeconds > 0 && s.pipeline.plan.recompute > 0, JSON.stringify(s.pipeline.plan));
  const html = readFileSync(s.report, 'utf8');
  assert.ok(html.includes('Pipeline Gantt') && html.includes('Peak memory per simulated device'));
  assert.ok(readFileSync(s.pipeline.gantt, 'utf8').startsWith('<svg'));
  assert.ok(JSON.parse(readFileSync(join(pdir, 'trace.json'), 'utf8')).traceEvents.length > 0);
  assert.ok(r.err.includes('bubble') && r.err.includes('device 1 [layers'), r.err);
});

test.run();
