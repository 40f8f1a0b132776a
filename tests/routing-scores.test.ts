// Score functions and top-k on host arrays, against values written out by hand (moe-semantics §2-§3).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { assertClose } from './support/backends.ts';
import { topkRows, groupLimitedTopk, topkRouting, type ScoreOptions } from '../src/model/routing/index.ts';

const opts = (o: Partial<ScoreOptions>): ScoreOptions =>
  ({ scoreFunction: 'softmax', preSoftmax: false, topk: 2, numGroups: null, groupTopk: null, topkScalingFactor: null, ...o });
const exp = Math.exp;
const sig = (x: number) => 1 / (1 + exp(-x));

// 3 tokens × 4 experts
const logits = [1, 2, 3, 0, /**/ 0, 0, 0, 5, /**/ -1, 4, 4, 2];
const test = suite('routing scores');

test('softmax after top-k: softmax over the k selected logits, rows sum to 1', () => {
  const r = topkRouting(logits, 3, 4, opts({}));
  assert.equal([...r.topkIdx], [2, 1, 3, 0, 1, 2]); // token 1: ties among 0,0,0 → expert 0; token 2: tie 4,4 → 1 first
  const a = exp(3) / (exp(3) + exp(2));
  const b = exp(5) / (exp(5) + 1);
  assertClose(r.probs, [0, 1 - a, a, 0, 1 - b, 0, 0, b, 0, 0.5, 0.5, 0], 1e-12, 'probs');
  assert.equal([...r.routingMap], [0, 1, 1, 0, 1, 0, 0, 1, 0, 1, 1, 0]);
});

test('softmax before top-k: probs = softmax over all E at the selected experts, not renormalised', () => {
  const r = topkRouting(logits, 3, 4, opts({ preSoftmax: true }));
  const z0 = exp(1) + exp(2) + exp(3) + 1;
  assertClose(r.probs.slice(0, 4), [0, exp(2) / z0, exp(3) / z0, 0], 1e-12, 'token 0');
  assert.ok(r.probs.slice(0, 4).reduce((s, v) => s + v, 0) < 1, 'row sums to < 1');
});

test('sigmoid with expert bias: bias changes selection only; renormalised for k > 1; scaling factor', () => {
  const l = [0, 1, -1, 2];
  const r = topkRouting(l, 1, 4, opts({ scoreFunction: 'sigmoid', topkScalingFactor: 2.5 }), [1, 0, 0, 0]);
  assert.equal([...r.topkIdx], [0, 3]); // σ+b = [1.5, .731, .269, .881]
  const g0 = sig(0), g3 = sig(2);
  assertClose(r.probs, [2.5 * g0 / (g0 + g3), 0, 0, 2.5 * g3 / (g0 + g3)], 1e-12, 'probs use σ, not σ+b');
  const k1 = topkRouting(l, 1, 4, opts({ scoreFunction: 'sigmoid', topk: 1 }));
  assertClose(k1.probs, [0, 0, 0, sig(2)], 1e-12, 'k = 1: no renormalisation');
});

test('top-k ties go to the lower index', () => {
  assert.equal([...topkRows([1, 1, 1, 0], 1, 4, 2)], [0, 1]);
  assert.equal([...topkRows([0, 2, 2, 2], 1, 4, 2)], [1, 2]);
  assert.equal([...topkRows([-1, -1, -1, -1], 1, 4, 3)], [0, 1, 2]);
});

test('group-limited: groups ranked by the sum of their top k/g scores; experts outside are never picked', () => {
  // E=8 in G=4 groups of 2, k=4, g=2 → groups scored by their top-2 sum: [5, 4.5, 6, 0] → groups {2, 0}
  const s = [5, 0, 4.5, 0, 3, 3, 0, 0];
  assert.equal([...topkRows(s, 1, 8, 4)], [0, 2, 4, 5], 'plain top-4 takes 4.5');
  assert.equal([...groupLimitedTopk(s, 1, 8, 4, 4, 2)], [0, 4, 5, 1], 'group-limited drops group 1');
  // k/g = 1: groups by their max [5, 4.5, 3, 0] → {0, 1}
  assert.equal([...groupLimitedTopk(s, 1, 8, 2, 4, 2)], [0, 2]);
});

test('group-limited ranks on the path-dependent scores: sigmoid + bias', () => {
  const l = [2, 2, 0, 0];               // σ = [.88, .88, .5, .5]
  const r = topkRouting(l, 1, 4, opts({ scoreFunction: 'sigmoid', numGroups: 2, groupTopk: 1 }), [0, 0, 1, 1]);
  assert.equal([...r.topkIdx], [2, 3], 'bias lifts group 1 (1.5+1.5 > .88+.88)');
  assertClose(r.probs, [0, 0, 0.5, 0.5], 1e-12, 'weights from σ only');
});

test('property: top-k picks the k largest, descending, lower index first among ties', () => {
  fc.assert(fc.property(fc.array(fc.integer({ min: -3, max: 3 }), { minLength: 1, maxLength: 12 }), fc.nat(), (vals, kk) => {
    const k = 1 + (kk % vals.length);
    const want = vals.map((v, i) => [v, i]).sort((a, b) => b[0] - a[0] || a[1] - b[1]).slice(0, k).map((p) => p[1]);
    assert.equal([...topkRows(vals, 1, vals.length, k)], want);
  }), { numRuns: 200 });
});

test.run();
