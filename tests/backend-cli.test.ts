// `ultramoe backends`: lists every backend with a probe or a reason, and --json ends in one JSON line.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { run } from '../src/cli/commands/backends.ts';
import { loadOpenBlas } from '../src/backend/openblas.ts';

async function capture(argv: string[]): Promise<{ code: number; lines: string[] }> {
  const lines: string[] = [];
  const log = console.log;
  console.log = (...a: unknown[]) => { lines.push(a.join(' ')); };
  try { return { code: await run(argv), lines }; } finally { console.log = log; }
}

test('--json: one JSON object on the last line with wasm, wasm+openblas, cpu and node', async () => {
  const { code, lines } = await capture(['--json', '--seconds', '0.05']);
  assert.is(code, 0);
  const { backends } = JSON.parse(lines[lines.length - 1]) as { backends: { name: string; available: boolean; gflops?: number; note: string }[] };
  assert.equal(backends.map((b) => b.name), ['wasm', 'wasm+openblas', 'cpu', 'node']);
  for (const b of backends.filter((x) => x.available)) assert.ok(b.gflops! > 0, `${b.name} probe`);
  assert.ok(backends[0].available && backends[2].available, 'wasm and cpu always work');
  assert.is(backends[1].available, typeof loadOpenBlas() !== 'string');
  if (!backends[3].available) assert.match(backends[3].note, /^not installed: run `npm install @tensorflow\/tfjs-node`/);
});

test('bad --seconds is a usage error', async () => {
  const err = console.error;
  console.error = () => {};
  try { assert.is((await capture(['--seconds', 'abc'])).code, 2); } finally { console.error = err; }
});

test.run();
