// `ultramoe devices`: the catalog listing, one spec with sources, JSON output and memory overrides.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { run } from '../src/cli/commands/devices.ts';

async function capture(argv: string[]): Promise<{ code: number; out: string[] }> {
  const out: string[] = [], log = console.log;
  console.log = (...a: unknown[]) => { out.push(a.join(' ')); };
  try { return { code: await run(argv), out }; } finally { console.log = log; }
}

const test = suite('devices command');

test('lists the catalog', async () => {
  const { code, out } = await capture([]);
  assert.is(code, 0);
  const text = out.join('\n');
  for (const name of ['ascend-910b', 'ascend-910c', 'a100-sxm-80gb', 'h800-sxm']) assert.match(text, name);
});

test('--json prints one JSON object last; --device-memory scales HBM', async () => {
  const { out } = await capture(['--json', '--spec', 'ascend-910b', '--device-memory', '64MiB']);
  const spec = JSON.parse(out[out.length - 1]);
  assert.is(spec.hbmBytes, 64 * 2 ** 20);
  assert.is(spec.interNode.bandwidth, 25e9);
  const all = JSON.parse((await capture(['--json'])).out.at(-1)!);
  assert.ok(all.specs.length >= 9);
});

test('--spec shows the source of every number; bad input fails clearly', async () => {
  const { out } = await capture(['--spec', 'h100-sxm']);
  assert.match(out.join('\n'), /interNode.bandwidth\s+NDR 400 Gb\/s/);
  try { await run(['--spec', 'nope']); assert.unreachable('should throw'); } catch (e) { assert.match((e as Error).message, /unknown device spec 'nope'; known:/); }
  try { await run(['--device-memory', 'lots']); assert.unreachable('should throw'); } catch (e) { assert.match((e as Error).message, /not a size: 'lots'/); }
});

test.run();
