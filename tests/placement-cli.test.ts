// `ultramoe place`: text and --json output on the EPLB README loads, and input errors (exit code 2).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../src/cli/commands/place.ts';

const test = suite('placement-cli');
const dir = mkdtempSync(join(tmpdir(), 'place-'));
const file = join(dir, 'w.json');
writeFileSync(file, JSON.stringify([[90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86], [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27]]));

async function capture(argv: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [], err: string[] = [];
  const log = console.log, error = console.error;
  console.log = (...a: unknown[]) => { out.push(a.join(' ')); };
  console.error = (...a: unknown[]) => { err.push(a.join(' ')); };
  try { return { code: await run(argv), out, err }; } finally { console.log = log; console.error = error; }
}

test('--json: last line is one object with the EPLB README placement and before/after balance', async () => {
  const r = await capture(['--loads', file, '--devices', '8', '--nodes', '2', '--groups', '4', '--replicas', '16', '--solver', 'eplb', '--json']);
  assert.is(r.code, 0);
  const j = JSON.parse(r.out[r.out.length - 1]);
  assert.equal(j.layers[0].physicalToLogical, [5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1]);
  assert.equal(j.layers[1].logicalCount, [1, 2, 1, 1, 1, 2, 2, 1, 2, 1, 1, 1]);
  assert.is(j.layers[0].logicalToPhysical[5].length, 2);
  assert.ok(Math.abs(j.layers[0].after.maxOverMean - 156 / 129.125) < 1e-12);
  // before: 12 experts on 8 devices is not contiguous-divisible, so slot p -> expert p mod 12 over 16 slots
  assert.ok(Math.abs(j.layers[0].before.max - 269) < 1e-9);
});

test('text output shows per-device loads and the default solver (ours) never loses to static', async () => {
  const r = await capture(['--loads', file, '--devices', '4', '--replicas', '16']);
  assert.is(r.code, 0);
  assert.ok(r.out[0].startsWith('solver ours'));
  const lines = r.out.filter((l) => l.includes('max/mean: before'));
  assert.is(lines.length, 2);
  for (const l of lines) {
    const [, before, after] = /before ([0-9.]+)\s+after ([0-9.]+)/.exec(l)!;
    assert.ok(Number(after) < Number(before), l);
  }
});

test('bad input: exit code 2 and every problem listed', async () => {
  const r = await capture(['--loads', file, '--devices', '5', '--nodes', '2', '--groups', '5', '--replicas', '16', '--solver', 'foo']);
  assert.is(r.code, 2);
  const msg = r.err.join('\n');
  for (const s of ['multiple of numDevices', 'multiple of numNodes', 'multiple of numGroups', "unknown solver 'foo'"]) assert.ok(msg.includes(s), msg);
  const r2 = await capture(['--devices', 'x']);
  assert.is(r2.code, 2);
  assert.ok(r2.err.join('\n').includes('--loads is required') && r2.err.join('\n').includes("--devices must be a positive integer"));
  const r3 = await capture(['--loads', file, '--devices', '4', '--solver', 'greedy', '--replicas', '16']);
  assert.is(r3.code, 2);
  assert.ok(r3.err.join('\n').includes('does not replicate'));
});

test.run();
