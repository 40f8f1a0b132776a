// Expert-load traces: the file format's validation and the synthetic Zipf generator.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { meanLoads, parseTrace, syntheticZipfTrace, TRACE_FORMAT, zipfShares, type ExpertLoadTrace } from '../src/parallel/placement/trace.ts';
import { PlacementError } from '../src/parallel/placement/types.ts';

const test = suite('placement-trace');

test('zipfShares: sum to 1, decreasing, ratio 2^-s between ranks 1 and 2, capped at 1/topK', () => {
  for (const s of [0.5, 1, 1.5]) {
    const p = zipfShares(64, s);
    assert.ok(Math.abs(p.reduce((a, b) => a + b, 0) - 1) < 1e-12);
    assert.ok(Math.abs(p[1] / p[0] - 2 ** -s) < 1e-12);
    const c = zipfShares(64, s, 8);
    assert.ok(Math.abs(c.reduce((a, b) => a + b, 0) - 1) < 1e-12);
    assert.ok(c.every((x) => x <= 1 / 8 + 1e-15));
    for (let r = 1; r < 64; r++) assert.ok(c[r] <= c[r - 1] + 1e-15);
  }
  // Zipf(1.5) over 64 experts puts 0.41 of the mass on rank 0; with k = 8 it is capped at 0.125
  assert.ok(zipfShares(64, 1.5)[0] > 0.4);
  assert.is(zipfShares(64, 1.5, 8)[0], 0.125);
});

test('syntheticZipfTrace: deterministic by seed, right shape, expected total, drift moves the hot experts', () => {
  const o = { numLayers: 2, numExperts: 32, steps: 60, exponent: 1.0, tokensPerStep: 1024, topK: 4, drift: 3, seed: 9 };
  const a = syntheticZipfTrace(o), b = syntheticZipfTrace(o);
  assert.equal(a, b);
  assert.is(a.steps.length, 60);
  assert.is(a.steps[0].length, 2);
  assert.is(a.steps[0][0].length, 32);
  for (const step of a.steps) for (const row of step) {
    const tot = row.reduce((x, y) => x + y, 0);
    assert.ok(Math.abs(tot - 4096) < 0.05 * 4096, `total ${tot}`); // sampling noise ~ sqrt(4096)
  }
  const argmax = (r: number[]) => r.indexOf(Math.max(...r));
  const first = meanLoads(a, 0, 10), last = meanLoads(a, 50, 60);
  const moved = [0, 1].some((l) => argmax(first[l]) !== argmax(last[l]) || first[l].some((v, e) => Math.abs(v - last[l][e]) > 0.3 * Math.max(v, 1)));
  assert.ok(moved, 'expected drift between the first and last 10 steps');
  const still = syntheticZipfTrace({ ...o, drift: 0 });
  const f0 = meanLoads(still, 0, 30), f1 = meanLoads(still, 30, 60);
  assert.is(argmax(f0[0]), argmax(f1[0]));
  assert.not.equal(syntheticZipfTrace({ ...o, seed: 10 }).steps[0], a.steps[0]);
});

test('parseTrace: a generated trace round-trips through JSON; bad traces list every problem', () => {
  const t = syntheticZipfTrace({ numLayers: 1, numExperts: 8, steps: 3, exponent: 0.5 });
  assert.equal(parseTrace(JSON.parse(JSON.stringify(t))), t);
  try {
    parseTrace({ format: 'x', version: 2, name: 3, numLayers: 0, numExperts: 8, steps: [] });
    assert.unreachable('should throw');
  } catch (e) {
    assert.instance(e, PlacementError);
    assert.is((e as PlacementError).problems.length, 5, (e as Error).message);
  }
  const bad = { format: TRACE_FORMAT, version: 1, name: 'b', numLayers: 1, numExperts: 2, steps: [[[1, 2]], [[1, -2]], [[1]]] };
  try { parseTrace(bad); assert.unreachable('should throw'); } catch (e) {
    assert.equal((e as PlacementError).problems, ['steps[1][0] has a negative or non-numeric load', 'steps[2][0] must have 2 entries']);
  }
});

test('meanLoads averages a step window', () => {
  const t: ExpertLoadTrace = { format: TRACE_FORMAT, version: 1, name: 'm', numLayers: 1, numExperts: 2, steps: [[[2, 0]], [[4, 2]], [[0, 10]]] };
  assert.equal(meanLoads(t), [[2, 4]]);
  assert.equal(meanLoads(t, 0, 2), [[3, 1]]);
});

test.run();
