// The permutation plan (expert-major, token-ascending) and the host permute/unpermute round trip (§7).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { assertClose } from './support/backends.ts';
import { permutePlan, permuteRows, unpermuteRows, topkRouting } from '../src/model/routing/index.ts';

const test = suite('routing permute plan');

test('expert-major then token-ascending; counts, offsets, permuted probs', () => {
  // t0 → {0, 2}, t1 → {2}, t2 → {0, 1} (E = 4, expert 3 unused)
  const map = Uint8Array.from([1, 0, 1, 0, /**/ 0, 0, 1, 0, /**/ 1, 1, 0, 0]);
  const probs = [0.6, 0, 0.4, 0, /**/ 0, 0, 1, 0, /**/ 0.3, 0.7, 0, 0];
  const p = permutePlan(map, probs, 3, 4);
  assert.equal([...p.sortedIndices], [0, 2, 2, 0, 1]);
  assert.equal([...p.expertOfRow], [0, 0, 1, 2, 2]);
  assert.equal(p.tokensPerExpert, [2, 1, 2, 0]);
  assert.equal([...p.offsets], [0, 2, 3, 5, 5]);
  assertClose(p.permutedProbs, [0.6, 0.3, 0.7, 0.4, 1], 1e-7, 'permutedProbs');
  const x = [10, 11, 20, 21, 30, 31]; // [T=3, H=2]
  assert.equal([...permuteRows(x, 2, p)], [10, 11, 30, 31, 30, 31, 10, 11, 20, 21]);
});

test('property: identity experts with probs 1/k restore x (permute → unpermute round trip)', () => {
  fc.assert(fc.property(fc.integer({ min: 1, max: 10 }), fc.integer({ min: 1, max: 6 }), fc.nat(), fc.integer({ min: 0, max: 1e6 }), (T, E, kk, seed) => {
    const k = 1 + (kk % E), H = 3;
    let s = seed;
    const rnd = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) * 4 - 2;
    const logits = Array.from({ length: T * E }, rnd), x = Float32Array.from({ length: T * H }, rnd);
    const r = topkRouting(logits, T, E, { scoreFunction: 'softmax', preSoftmax: false, topk: k, numGroups: null, groupTopk: null, topkScalingFactor: null });
    const p = permutePlan(r.routingMap, Float64Array.from(r.routingMap, (v) => v / k), T, E);
    assert.is(p.numRows, T * k);
    assertClose(unpermuteRows(permuteRows(x, H, p), H, p, true), x, 1e-6, 'round trip');
  }), { numRuns: 100 });
});

test.run();
