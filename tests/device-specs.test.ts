// The spec catalog is valid and cited; user specs are validated with every problem listed.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CATALOG, getSpec, parseSpec, specProblems, withMemory } from '../src/device/specs.ts';
import { loadSpecFile, resolveSpec } from '../src/device/spec-file.ts';

const test = suite('device specs');

const CITED = ['peakFlops', 'hbmBytes', 'hbmBandwidth', 'intraNode.bandwidth', 'intraNode.latency', 'intraNode.efficiency',
  'interNode.bandwidth', 'interNode.latency', 'interNode.efficiency', 'hostLink.bandwidth', 'devicesPerNode', 'hostMemoryBytes',
  'efficiency.gemm', 'efficiency.memory', 'efficiency.launchOverhead'];

test('every catalog entry is valid and cites a source for every number', () => {
  const names = Object.keys(CATALOG);
  for (const want of ['ascend-910b', 'ascend-910b2', 'ascend-910b3', 'ascend-910b4', 'ascend-910c', 'a100-sxm-80gb', 'h100-sxm', 'h800-sxm', 'h200-sxm'])
    assert.ok(names.includes(want), `catalog has ${want}`);
  for (const [name, s] of Object.entries(CATALOG)) {
    assert.equal(specProblems(s), [], `${name} valid`);
    for (const f of CITED) assert.ok(typeof s.sources[f] === 'string' && s.sources[f].length > 10, `${name}: source for ${f}`);
  }
});

test('catalog numbers match the reference tables', () => {
  assert.is(getSpec('ascend-910b').interNode.bandwidth, 25e9); // RoCE 200 Gbps per NPU (Pangu Ultra §4.1)
  assert.is(getSpec('ascend-910b').hbmBytes, 64 * 2 ** 30);
  assert.is(getSpec('ascend-910b').peakFlops.bf16, 256e12);
  assert.is(getSpec('h100-sxm').peakFlops.fp8, 1979e12);
  assert.is(getSpec('a100-sxm-80gb').peakFlops.fp8, undefined);
  assert.is(getSpec('h800-sxm').intraNode.bandwidth, 200e9);
});

test('getSpec returns a copy and names the known specs on a typo', () => {
  const s = getSpec('ascend-910b');
  s.hbmBytes = 1;
  assert.is(getSpec('ascend-910b').hbmBytes, 64 * 2 ** 30);
  assert.throws(() => getSpec('ascend-911'), /unknown device spec 'ascend-911'; known: .*ascend-910b.*h100-sxm/);
});

test('bad specs are rejected with every problem listed', () => {
  const bad = { ...getSpec('ascend-910b'), devicesPerNode: 0, intraNode: { name: 'HCCS', bandwidth: -5, latency: 1e-6, efficiency: 1.5 }, peakFlops: { bf16: 0, int4: 1 } };
  const problems = specProblems(bad);
  assert.ok(problems.includes('devicesPerNode: expected an integer >= 1, got 0'), problems.join('\n'));
  assert.ok(problems.includes('intraNode.bandwidth: expected bytes/s > 0, got -5'));
  assert.ok(problems.includes('intraNode.efficiency: expected a number in (0, 1], got 1.5'));
  assert.ok(problems.some((p) => p.startsWith('peakFlops.bf16')) && problems.some((p) => p.startsWith('peakFlops.int4: unknown dtype')));
  assert.is(problems.length, 5);
  assert.throws(() => parseSpec(bad, 'bad.json'), /invalid device spec \(bad.json\), 5 problem\(s\):\n  - /);
  assert.equal(specProblems(42), ['spec: expected a JSON object']);
  assert.ok(specProblems({}).length >= 10, 'an empty object lists every missing field');
});

test('user spec files load, validate and can be scaled down', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ultramoe-spec-'));
  const good = join(dir, 'my-npu.json'), bad = join(dir, 'bad.json'), broken = join(dir, 'broken.json');
  const { sources: _ignored, ...noSources } = { ...getSpec('ascend-910b3'), name: 'my-npu' };
  writeFileSync(good, JSON.stringify(noSources));
  writeFileSync(bad, JSON.stringify({ ...noSources, hbmBandwidth: -1, devicesPerNode: 0 }));
  writeFileSync(broken, '{ not json');
  assert.is(loadSpecFile(good).name, 'my-npu');
  assert.equal(loadSpecFile(good).sources, {});
  assert.throws(() => loadSpecFile(bad), /2 problem\(s\):\n  - hbmBandwidth: expected a number > 0, got -1\n  - devicesPerNode/);
  assert.throws(() => loadSpecFile(broken), /not valid JSON/);
  const toy = resolveSpec(good, { hbmBytes: 64 * 2 ** 20 });
  assert.is(toy.hbmBytes, 64 * 2 ** 20);
  assert.is(resolveSpec('h100-sxm').name, 'h100-sxm');
  assert.throws(() => withMemory(getSpec('h100-sxm'), { hbmBytes: 0 }), /hbmBytes: expected a number > 0/);
});

test.run();
