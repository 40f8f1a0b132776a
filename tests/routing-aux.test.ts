// Aux losses, z-loss and the expert-bias update on host arrays, against hand-computed values
// (moe-semantics §5-§6). Tokens are batch-major: t = b·S + s.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { assertClose } from './support/backends.ts';
import {
  switchAuxLoss, seqAuxLoss, globalAuxLoss, epGroupAuxLoss, GlobalAuxTracker, zLoss, auxLossScores, auxLossScoresBackward, auxRoutingMap,
  updateExpertBias, routeTokens, countsPerExpert,
} from '../src/model/routing/index.ts';
import { resolveConfig } from '../src/model/config.ts';

const test = suite('routing aux losses');
// 2 tokens × 2 experts, k = 1
const s = [0.7, 0.3, 0.4, 0.6];
const m = Uint8Array.from([1, 0, 0, 1]);

test('switch: coeff·E/(k·T²)·Σ_e S_e·C_e and its constant gradient', () => {
  const r = switchAuxLoss(s, m, 2, 2, 1, 0.01);
  // S = [1.1, 0.9], C = [1, 1] → 0.01·2/4·2 = 0.01
  assertClose([r.value], [0.01], 1e-12, 'value');
  assertClose(r.dScores, [0.005, 0.005, 0.005, 0.005], 1e-12, 'dScores = coeff·E·C_e/(k·T²)');
  const skew = switchAuxLoss(s, Uint8Array.from([1, 0, 1, 0]), 2, 2, 1, 0.01); // C = [2, 0]
  assertClose([skew.value], [0.01 * 2 / 4 * 1.1 * 2], 1e-12, 'imbalanced');
});

test('seq: mean over sequences of the per-sequence switch loss (T = S)', () => {
  // B = 2 sequences of S = 1: each token is its own sequence → per-seq loss = coeff·E/k·s[t,e*]
  const r = seqAuxLoss(s, m, 2, 2, 1, 1, 0.01);
  assertClose([r.value], [(0.01 * 2 * 0.7 + 0.01 * 2 * 0.6) / 2], 1e-12, 'value');
  assertClose(r.dScores, [0.01, 0, 0, 0.01], 1e-12, 'dScores');
});

test('property: seq aux with one sequence (B = 1) equals switch aux', () => {
  fc.assert(fc.property(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 2, max: 6 }), fc.integer({ min: 0, max: 1e6 }), (T, E, seed) => {
    let x = seed;
    const logits = Array.from({ length: T * E }, () => ((x = (x * 1103515245 + 12345) % 2147483648) / 2147483648) * 4 - 2);
    const sc = auxLossScores(logits, T, E, 'softmax'), map = auxRoutingMap(sc, T, E, 1);
    const a = switchAuxLoss(sc, map, T, E, 1, 0.1), b = seqAuxLoss(sc, map, T, E, 1, T, 0.1);
    assertClose([b.value], [a.value], 1e-12, 'value');
    assertClose(b.dScores, a.dScores, 1e-12, 'grad');
  }), { numRuns: 100 });
});

test('global: running average of counts over micro-batches, reset at the end of the global batch', () => {
  const tr = new GlobalAuxTracker(2);
  tr.add([2, 0]); tr.add([0, 2]);
  assert.equal([...tr.average()], [1, 1]);
  assertClose([globalAuxLoss(s, 2, 2, 1, tr, 0.01).value], [0.01], 1e-12, 'equals switch with balanced counts');
  assertClose([globalAuxLoss(s, 2, 2, 1, tr, 0.01, 2).value], [0.01 / 4], 1e-12, 'T_tot = T·groupSize');
  tr.reset();
  assert.is(tr.steps, 0);
  assert.equal([...tr.counts], [0, 0]);
});

test('ep-group: counts summed over the group, T_tot = Σ T', () => {
  const r = epGroupAuxLoss(s, 2, 2, 1, [[1, 1], [2, 0]], 0.01);
  // C = [3, 1], T_tot = 4: 0.01·2/16·(1.1·3 + 0.9·1)
  assertClose([r.value], [0.01 * 2 / 16 * (3.3 + 0.9)], 1e-12, 'value');
  assertClose(r.dScores, [0.01 * 2 * 3 / 16, 0.01 * 2 / 16, 0.01 * 2 * 3 / 16, 0.01 * 2 / 16], 1e-12, 'grad');
});

test('z-loss: coeff·mean_t lse², gradient 2·coeff·lse·softmax/T', () => {
  const z = zLoss([0, 0, 1, 1], 2, 2, 0.1);
  const l0 = Math.log(2), l1 = 1 + Math.log(2);
  assertClose([z.value], [0.1 * (l0 * l0 + l1 * l1) / 2], 1e-12, 'value');
  assertClose(z.dLogits, [0.1 * l0 / 2, 0.1 * l0 / 2, 0.1 * l1 / 2, 0.1 * l1 / 2], 1e-12, 'dLogits');
});

test('aux scores: softmax over all E, or σ/Σσ for sigmoid', () => {
  const l = [0, Math.log(3)];
  assertClose(auxLossScores(l, 1, 2, 'softmax'), [0.25, 0.75], 1e-12, 'softmax');
  const a = 0.5, b = 0.75; // σ(0), σ(ln 3)
  assertClose(auxLossScores(l, 1, 2, 'sigmoid'), [a / (a + b), b / (a + b)], 1e-12, 'normalised sigmoid');
});

test('auxLossScoresBackward matches central finite differences (softmax and sigmoid)', () => {
  const T = 3, E = 4, l = [0.3, -1, 2, 0.5, 1, 1, -0.2, 0, -2, 0.4, 0.1, 1.5];
  const g = [0.2, -0.4, 1, 0.3, -1, 0.5, 0.7, 0.1, 0.9, -0.3, 0.2, -0.6]; // upstream ∂L/∂s
  for (const fn of ['softmax', 'sigmoid'] as const) {
    const f = (x: number[]) => auxLossScores(x, T, E, fn).reduce((a, v, i) => a + v * g[i], 0);
    const fd = l.map((_, i) => { const p = [...l], m = [...l]; p[i] += 1e-6; m[i] -= 1e-6; return (f(p) - f(m)) / 2e-6; });
    assertClose(auxLossScoresBackward(l, auxLossScores(l, T, E, fn), g, T, E, fn), fd, 1e-6, fn);
  }
});

test('pinned: the aux map is a plain top-k, ignoring expert bias and groups (routing differs)', () => {
  const cfg = resolveConfig('tiny', { moe: { numExperts: 4, topk: 1, scoreFunction: 'sigmoid', expertBias: true, numGroups: 2, groupTopk: 1,
    auxLoss: [{ type: 'switch', coeff: 1 }], zLossCoeff: 0, topkScalingFactor: null } });
  const logits = [3, 0, 0, 0, /**/ 3, 0, 0, 0];
  const plan = routeTokens(logits, 2, 4, cfg.moe, { training: true, expertBias: [0, 0, 10, 0] });
  assert.equal([...plan.routingMap], [0, 0, 1, 0, 0, 0, 1, 0], 'routing follows the bias');
  const sc = auxLossScores(logits, 2, 4, 'sigmoid');
  assert.equal([...countsPerExpert(auxRoutingMap(sc, 2, 4, 1), 2, 4)], [2, 0, 0, 0], 'aux map ignores it');
  let S0 = 0; for (let t = 0; t < 2; t++) S0 += sc[t * 4];
  assertClose([plan.auxLosses.switch], [4 / (1 * 4) * S0 * 2], 1e-12, 'switch value uses the aux map');
});

test('eval: no aux or z losses', () => {
  const cfg = resolveConfig('tiny', { moe: { numExperts: 4, topk: 2, auxLoss: [{ type: 'switch', coeff: 1 }], zLossCoeff: 1 } });
  const plan = routeTokens([1, 2, 3, 4], 1, 4, cfg.moe, { training: false });
  assert.equal(plan.auxLosses, {});
  assert.is(plan.auxDLogits, null);
});

test('expert bias: b += u·sign(mean(c) − c), sign(0) = 0', () => {
  const b = updateExpertBias([0, 0.5, 0, 0], [4, 2, 2, 0], 1e-3); // mean 2
  assertClose(b, [-1e-3, 0.5, 0, 1e-3], 1e-6, 'bias');
});

test.run();
