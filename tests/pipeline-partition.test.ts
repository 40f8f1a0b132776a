import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { partitionLayers, slotTable } from '../src/parallel/pipeline/partition.ts';

const test = suite('pipeline partition');

/** Brute force: min over all contiguous splits into C non-empty (or capped) chunks of the max cost. */
function bruteMax(costs: number[], C: number, minLayers: number, cap: number, extra: (c: number) => number): number {
  let best = Infinity;
  const rec = (c: number, i: number, cur: number) => {
    if (c === C) { if (i === costs.length) best = Math.min(best, cur); return; }
    for (let j = i + minLayers; j <= Math.min(costs.length, i + cap); j++) {
      let s = extra(c);
      for (let l = i; l < j; l++) s += costs[l];
      rec(c + 1, j, Math.max(cur, s));
    }
  };
  rec(0, 0, 0);
  return best;
}

test('uniform 8 layers on pp=4: two layers per stage', () => {
  const p = partitionLayers(new Array(8).fill(1), 4);
  assert.equal(p.chunks.map((c) => [c.start, c.end]), [[0, 2], [2, 4], [4, 6], [6, 8]]);
  assert.is(p.maxChunkCost, 2);
  assert.is(p.imbalance, 1);
  assert.equal(p.stageOfLayer, [0, 0, 1, 1, 2, 2, 3, 3]);
});

test('embedding and head costs push layers away from the first and last stage', () => {
  // 10 layers + 1 + 2 = 13 over 4 stages: optimum 4 (a lower bound is ⌈13/4⌉ with unit layers).
  const p = partitionLayers(new Array(10).fill(1), 4, 1, { embeddingCost: 1, headCost: 2 });
  assert.is(p.maxChunkCost, 4);
  const n = p.chunks.map((c) => c.end - c.start);
  assert.ok(n[0] <= 3 && n[3] <= 2, `layers per stage ${n}`);
  assert.ok(n[1] >= n[3] && n[2] >= n[3]);
});

test('61 layers padded to 64 slots (paper): every chunk has the same slot count', () => {
  // 3 dense layers (cheaper) + 58 MoE layers; pp=4, vpp=2 → 8 chunks of 8 slots.
  const costs = [...new Array(3).fill(0.6), ...new Array(58).fill(1)];
  const p = partitionLayers(costs, 4, 2, { padTo: 64, embeddingCost: 0.5, headCost: 1.5 });
  assert.is(p.slotsPerChunk, 8);
  for (const c of p.chunks) assert.is(c.slots.length, 8);
  const table = slotTable(p);
  assert.is(table.length, 64);
  assert.is(table.filter((x) => x === null).length, 3);
  assert.equal(table.filter((x) => x !== null), costs.map((_, i) => i)); // every layer once, in order
  // Model chunk c lives on rank c mod 4 as virtual chunk ⌊c/4⌋.
  assert.equal(p.stages[1].chunks.map((c) => c.index), [1, 5]);
  // Optimal: equal to brute force with the same cap of 8 real layers per chunk.
  const extra = (c: number) => (c === 0 ? 0.5 : 0) + (c === 7 ? 1.5 : 0);
  assert.ok(Math.abs(p.maxChunkCost - bruteMax(costs, 8, 0, 8, extra)) < 1e-9);
  assert.ok(p.maxChunkCost <= 8 + 1e-9);
});

test('padding slots can carry a cost', () => {
  const p = partitionLayers([1, 1, 1], 2, 1, { padTo: 4, padCost: 0.25 });
  assert.equal(p.chunks.map((c) => c.cost).sort(), [1.25, 2]); // 2 layers | 1 layer + 1 no-op (0.25)
});

test('property: DP max chunk cost equals brute force', () => {
  fc.assert(fc.property(
    fc.array(fc.integer({ min: 0, max: 20 }), { minLength: 2, maxLength: 9 }),
    fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 2 }), fc.integer({ min: 0, max: 5 }),
    (costs, pp, vpp, emb) => {
      const C = pp * vpp;
      if (C > costs.length) return true;
      const p = partitionLayers(costs, pp, vpp, { embeddingCost: emb });
      const want = bruteMax(costs, C, 1, Infinity, (c) => (c === 0 ? emb : 0));
      assert.ok(Math.abs(p.maxChunkCost - want) < 1e-9, `${costs} pp=${pp} vpp=${vpp}: ${p.maxChunkCost} vs ${want}`);
      // contiguous, covering, in order
      let next = 0;
      for (const c of p.chunks) { assert.is(c.start, next); next = c.end; }
      assert.is(next, costs.length);
      return true;
    }), { numRuns: 150 });
});

test('fewer layers than chunks: padded to one slot per chunk, empty chunks pass through', () => {
  const p = partitionLayers([1, 1.5, 1.5, 1.5], 4, 2);
  assert.is(p.slotsPerChunk, 1);
  assert.is(p.chunks.length, 8);
  assert.is(p.chunks.filter((c) => c.end === c.start).length, 4);
  assert.ok(p.chunks.every((c) => c.slots.length === 1 && c.end - c.start <= 1));
  assert.is(p.maxChunkCost, 1.5);
  assert.equal(slotTable(p).filter((x) => x !== null), [0, 1, 2, 3]);
  // contiguous, in model order
  let next = 0;
  for (const c of p.chunks) { assert.is(c.start, next); next = c.end; }
  assert.is(next, 4);
  // one layer, pp=2: the layer on one chunk, the other chunk a no-op
  const q = partitionLayers([2], 2);
  assert.equal(q.chunks.map((c) => c.end - c.start).sort(), [0, 1]);
  // as many layers as chunks or more: unchanged (no padding, >= 1 layer per chunk)
  assert.is(partitionLayers([1, 1, 1, 1], 4).slotsPerChunk, null);
});

test('rejects impossible requests', () => {
  assert.throws(() => partitionLayers([1, 1, 1], 4, 1, { minLayersPerChunk: 1 }), /3 layers cannot give 4 chunks/);
  assert.throws(() => partitionLayers([1, 1, 1], 2, 1, { padTo: 5 }));
  assert.throws(() => partitionLayers(new Array(10).fill(1), 2, 1, { padTo: 8 }));
});

test.run();
