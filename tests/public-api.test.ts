// The README's routing snippet, run through the public entry point, gives the numbers the README shows.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assertClose } from './support/backends.ts';
import * as ultramoe from '../src/index.ts';

const test = suite('public API');

test('README routing snippet: sigmoid top-2, renormalised, scaled by 2.5', () => {
  const { PRESETS, routeTokens } = ultramoe;
  const moe = { ...PRESETS.tiny.moe, numExperts: 4, topk: 2, auxLoss: [{ type: 'switch' as const, coeff: 0.01 }] };
  const logits = [1, 0, -1, 2, 0, 0, 0, 0, 3, 1, 2, 0];
  const plan = routeTokens(logits, 3, 4, moe, { training: true });
  assert.equal([...plan.routing.topkIdx], [3, 0, 0, 1, 0, 2]);
  // Row 0 by hand: sigmoid(2)=0.880797, sigmoid(1)=0.731059; renormalised ×2.5.
  const s2 = 1 / (1 + Math.exp(-2)), s1 = 1 / (1 + Math.exp(-1));
  assertClose([...plan.probs.slice(0, 4)], [2.5 * s1 / (s1 + s2), 0, 0, 2.5 * s2 / (s1 + s2)], 1e-6, 'probs row 0');
  assertClose([...plan.probs.slice(4, 8)], [1.25, 1.25, 0, 0], 1e-12, 'probs row 1 (ties -> lower index)');
  assert.equal([...plan.permute.tokensPerExpert], [3, 1, 1, 1]);
  assertClose([plan.auxLosses.switch, plan.auxLosses.z], [0.010524059, 0.006570414], 1e-6, 'aux and z');
});

test('every layer is reachable from the entry point', () => {
  for (const name of ['MoEGPT', 'MoELayer', 'simulate', 'runSearch', 'Trainer', 'AdamW', 'countParams', 'SavedActivations'])
    assert.type((ultramoe as Record<string, unknown>)[name], 'function', name);
  assert.type(ultramoe.device.Cluster, 'function');
  assert.type(ultramoe.placement.PlacementController, 'function');
  assert.type(ultramoe.parallel.createParallelModel, 'function');
});

test.run();
