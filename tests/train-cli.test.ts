// `ultramoe train|sample|eval` end to end on a shrunken tiny model: flag validation lists every
// problem, --json's last line is the summary, the run directory holds report, metrics and a
// checkpoint that resume, sample and eval accept.
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
const dir = join(mkdtempSync(join(tmpdir(), 'ultramoe-cli-')), 'run');

test('invalid flags: every problem listed, exit 2, no run directory', () => {
  const r = cli('train', '--steps', '0', '--batch', 'x', '--backend', 'gpu', '--data', 'arith:div', '--tokenizer', 'bpe:3', '--override', '{"hiddenSize":-1}', '--out', dir);
  assert.is(r.code, 2);
  for (const s of ['--steps', '--batch', '--backend', 'arith', 'bpe:N', 'hiddenSize']) assert.ok(r.err.includes(s), `mentions ${s}:\n${r.err}`);
  assert.not.ok(existsSync(dir));
});

test('train --json writes summary, metrics, report and checkpoint; resume continues', () => {
  const r = cli('train', '--override', small, '--steps', '6', '--batch', '2', '--seq', '16', '--eval-every', '3', '--eval-batches', '1', '--out', dir, '--json');
  assert.is(r.code, 0, r.err);
  const s = JSON.parse(r.last);
  for (const k of ['lossStart', 'lossEnd', 'valLoss', 'tokensPerSecond', 'localMfu', 'steps', 'expertLoadMaxOverMean', 'report'])
    assert.ok(k in s, `summary has ${k}`);
  assert.is(s.steps, 6);
  assert.ok(s.lossStart > 5 && s.lossStart < 6, `initial loss near ln 256: ${s.lossStart}`);
  assert.ok(existsSync(join(dir, 'report.html')) && existsSync(join(dir, 'checkpoint', 'manifest.json')));
  const csv = readFileSync(join(dir, 'metrics.csv'), 'utf8').trim().split('\n');
  assert.is(csv.length, 7);
  for (const col of ['loss', 'lmLoss', 'auxLoss', 'zLoss', 'gradNorm', 'lr', 'tokensPerSecond', 'localMfu', 'valLoss', 'rssBytes', 'maxOverMean.L1', 'cv.L1', 'dropRate.L1'])
    assert.ok(csv[0].split(',').includes(col), `metrics.csv has ${col}: ${csv[0]}`);
  const r2 = cli('train', '--resume', dir, '--steps', '8', '--json');
  assert.is(r2.code, 0, r2.err);
  assert.is(JSON.parse(r2.last).steps, 8);
  assert.is(readFileSync(join(dir, 'metrics.csv'), 'utf8').trim().split('\n').length, 9);
  const bad = cli('train', '--resume', dir, '--data', 'arith');
  assert.is(bad.code, 1);
  assert.ok(bad.err.includes('trainer.json'), bad.err);
});

test('sample and eval read the checkpoint', () => {
  const s = cli('sample', dir, '--tokens', '5', '--seed', '2', '--json');
  assert.is(s.code, 0, s.err);
  assert.is(JSON.parse(s.last).tokens, 5);
  const e = cli('eval', dir, '--batches', '1', '--json');
  assert.is(e.code, 0, e.err);
  assert.ok(JSON.parse(e.last).valLoss > 0);
});

test.run();
