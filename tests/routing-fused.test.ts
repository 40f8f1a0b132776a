// The fused host-routing fast paths equal the readable reference functions: σ + z-loss with one exp
// per logit (extreme logits included), the permutation plan from [T, k] vs from the dense map, and
// the lazily built dense probs / routing map of a dropless plan.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { sigmoidWithZLoss } from '../src/model/routing/aux-fused.ts';
import { zLoss } from '../src/model/routing/aux-loss.ts';
import { sigmoid } from '../src/model/routing/topk.ts';
import { topkRouting } from '../src/model/routing/score.ts';
import { permutePlan, permutePlanFromTopk } from '../src/model/routing/permute-plan.ts';
import { routeTokens } from '../src/model/routing/plan.ts';
import { resolveConfig } from '../src/model/config.ts';

let seed = 3;
const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string) => {
  assert.is(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (!(Math.abs(a[i] - b[i]) <= tol * Math.max(1, Math.abs(b[i])))) assert.unreachable(`${what}[${i}]: ${a[i]} vs ${b[i]}`);
};

test('sigmoidWithZLoss = sigmoid + zLoss, ordinary and extreme rows', () => {
  const T = 6, E = 16;
  const logits = Float32Array.from({ length: T * E }, () => (rnd() - 0.5) * 8);
  for (let e = 0; e < E; e++) { logits[E + e] = -800 - e; logits[2 * E + e] = e === 3 ? 900 : -20 + e; logits[3 * E + e] = 750 - 50 * e; }
  const into = new Float64Array(T * E).fill(0.25), ref = new Float64Array(T * E).fill(0.25);
  const { scores, z } = sigmoidWithZLoss(logits, T, E, 1e-3, into);
  const zr = zLoss(logits, T, E, 1e-3, ref);
  close(scores, sigmoid(logits), 1e-14, 'sigma');
  close(into, ref, 1e-12, 'dlogits');
  close([z], [zr.value], 1e-12, 'z');
});

test('permutePlanFromTopk = permutePlan of the dense map; dropless plans build dense views lazily', () => {
  const moe = { ...resolveConfig('tiny').moe, numExperts: 32, topk: 4 };
  const T = 40, E = 32;
  const logits = Float32Array.from({ length: T * E }, () => rnd() - 0.5);
  const r = topkRouting(logits, T, E, moe);
  const a = permutePlanFromTopk(r.topkIdx, r.topkWeights, moe.topkScalingFactor ?? 1, T, E, moe.topk), b = permutePlan(r.routingMap, r.probs, T, E);
  assert.equal([...a.sortedIndices], [...b.sortedIndices]);
  assert.equal([...a.expertOfRow], [...b.expertOfRow]);
  assert.equal(a.tokensPerExpert, b.tokensPerExpert);
  assert.equal([...a.offsets], [...b.offsets]);
  assert.equal([...a.permutedProbs], [...b.permutedProbs]);
  const plan = routeTokens(logits, T, E, moe, { training: true });
  assert.equal([...plan.routingMap], [...r.routingMap]);
  close(plan.probs, r.probs, 1e-14, 'probs'); // σ via the fused z-loss pass: same up to rounding
});

test.run();
