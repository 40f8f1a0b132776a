// Capacity, drop policies and padding on host arrays (moe-semantics §4).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { getCapacity, applyTokenDropping, topkRouting, permutePlan } from '../src/model/routing/index.ts';

const test = suite('routing capacity');

test('capacity = ceil(T·k/E · cf)', () => {
  assert.is(getCapacity(6, 4, 2, 1.0), 3);
  assert.is(getCapacity(5, 4, 2, 1.1), 3);   // 2.5·1.1 = 2.75
  assert.is(getCapacity(16, 8, 2, 0.5), 2);
  assert.is(getCapacity(4, 4, 1, 0.1, 2), 2); // min capacity
});

// 4 tokens, 2 experts, k=1: every token wants expert 0; capacity = ceil(4/2·1) = 2
const probs = [0.1, 0, 0.9, 0, 0.5, 0, 0.7, 0];
const map = Uint8Array.from([1, 0, 1, 0, 1, 0, 1, 0]);

test("dropPolicy 'probs' keeps the highest-prob tokens", () => {
  const d = applyTokenDropping(probs, map, 4, 2, 1, 1.0, 'probs', false);
  assert.is(d.capacity, 2);
  assert.equal([...d.routingMap], [0, 0, 1, 0, 0, 0, 1, 0]);
  assert.equal([...d.probs], [0, 0, 0.9, 0, 0, 0, 0.7, 0]);
  assert.is(d.droppedAssignments, 2);
});

test("dropPolicy 'position' keeps the first routed tokens", () => {
  const d = applyTokenDropping(probs, map, 4, 2, 1, 1.0, 'position', false);
  assert.equal([...d.routingMap], [1, 0, 1, 0, 0, 0, 0, 0]);
  assert.is(d.droppedAssignments, 2);
});

test('padToCapacity: every expert gets exactly capacity rows, padding = lowest non-routed tokens with prob 0', () => {
  const d = applyTokenDropping(probs, map, 4, 2, 1, 1.0, 'probs', true);
  assert.equal([...d.routingMap], [0, 1, 1, 1, 0, 0, 1, 0]); // expert 1 padded with tokens 0, 1
  assert.equal([...d.probs], [0, 0, 0.9, 0, 0, 0, 0.7, 0]);
  const p = permutePlan(d.routingMap, d.probs, 4, 2);
  assert.equal([...p.sortedIndices], [1, 3, 0, 1]);
  assert.equal(p.tokensPerExpert, [2, 2]);
  assert.equal([...p.permutedProbs].map((v) => Math.round(v * 10) / 10), [0.9, 0.7, 0, 0]);
});

test('capacity > T: nothing dropped (and padding gives every expert all T tokens)', () => {
  const d = applyTokenDropping(probs, map, 4, 2, 1, 2.5, 'probs', false); // capacity 5 > 4
  assert.is(d.capacity, 5);
  assert.equal([...d.routingMap], [...map]);
  assert.is(d.droppedAssignments, 0);
  assert.is(applyTokenDropping(probs, map, 4, 2, 1, 2.5, 'probs', true).routingMap.reduce((a, b) => a + b, 0), 8);
});

test('property: padded map sums to E·capacity; unpadded ≤ min(T·k, E·capacity); kept ⊆ routed', () => {
  fc.assert(fc.property(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 6 }), fc.nat(), fc.integer({ min: 1, max: 20 }),
    fc.boolean(), fc.integer({ min: 0, max: 1e6 }), (T, E, kk, cf10, position, seed) => {
      const k = 1 + (kk % E), cf = cf10 / 10;
      let s = seed;
      const logits = Array.from({ length: T * E }, () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) * 4 - 2);
      const r = topkRouting(logits, T, E, { scoreFunction: 'softmax', preSoftmax: false, topk: k, numGroups: null, groupTopk: null, topkScalingFactor: null });
      const policy = position ? 'position' : 'probs';
      const cap = getCapacity(T, E, k, cf);
      const pad = applyTokenDropping(r.probs, r.routingMap, T, E, k, cf, policy, true);
      const noPad = applyTokenDropping(r.probs, r.routingMap, T, E, k, cf, policy, false);
      const sum = (m: Uint8Array) => m.reduce((a, b) => a + b, 0);
      if (cap <= T) assert.is(sum(pad.routingMap), E * cap);
      assert.ok(sum(noPad.routingMap) <= Math.min(T * k, E * cap));
      assert.is(sum(noPad.routingMap) + noPad.droppedAssignments, T * k);
      for (let i = 0; i < T * E; i++) assert.ok(!noPad.routingMap[i] || r.routingMap[i]);
    }), { numRuns: 200 });
});

test.run();
