// Routing against golden vectors from an independent NumPy reading of moe-semantics §1-§7
// (tests/golden/gen_routing.py): selection, probs, capacity/padding, permutation, aux/z values and
// dlogits (NumPy central finite differences of sum(dprobs·probs) + Σaux + z, decisions fixed).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { assertClose } from './support/backends.ts';
import { routeTokens, routingBackward, topkRoutingBackward } from '../src/model/routing/index.ts';
import type { MoEConfig } from '../src/model/config.ts';

interface GoldenCase {
  name: string; T: number; E: number; seqLen: number; moe: Partial<MoEConfig>;
  logits: number[]; expertBias: number[] | null; topkIdx: number[]; capacity: number | null; droppedAssignments: number;
  probs: number[]; routingMap: number[]; sortedIndices: number[]; tokensPerExpert: number[]; permutedProbs: number[];
  auxLosses: Record<string, number>; dprobs: number[]; dlogits: number[];
}
const cases: GoldenCase[] = JSON.parse(readFileSync(new URL('./golden/routing-cases.json', import.meta.url), 'utf8'));

const moeOf = (c: GoldenCase): MoEConfig => ({
  numExperts: c.E, expertHiddenSize: 4, numSharedExperts: 0, sharedExpertGate: false, expertBias: c.expertBias !== null,
  biasUpdateRate: 1e-3, inputJitterEps: 0, ...c.moe,
} as MoEConfig);

const test = suite('routing golden (numpy)');
test('there are golden cases', () => { assert.ok(cases.length >= 12); });
for (const c of cases) {
  test(c.name, () => {
    const logits = Float32Array.from(c.logits);
    const plan = routeTokens(logits, c.T, c.E, moeOf(c), { training: true, expertBias: c.expertBias, seqLen: c.seqLen });
    assert.equal([...plan.routing.topkIdx], c.topkIdx, 'topkIdx');
    assert.is(plan.capacity, c.capacity, 'capacity');
    assert.is(plan.droppedAssignments, c.droppedAssignments, 'dropped');
    assert.equal([...plan.routingMap], c.routingMap, 'final routingMap');
    assertClose(plan.probs, c.probs, 1e-6, 'final probs');
    assert.equal([...plan.permute.sortedIndices], c.sortedIndices, 'sortedIndices');
    assert.equal(plan.permute.tokensPerExpert, c.tokensPerExpert, 'tokensPerExpert');
    assertClose(plan.permute.permutedProbs, c.permutedProbs, 1e-6, 'permutedProbs');
    assert.equal(Object.keys(plan.auxLosses).sort(), Object.keys(c.auxLosses).sort(), 'aux loss types');
    for (const key of Object.keys(c.auxLosses)) assertClose([plan.auxLosses[key]], [c.auxLosses[key]], 1e-9, `aux ${key}`);
    const { sortedIndices, expertOfRow } = plan.permute;
    const dpp = Float64Array.from(sortedIndices, (t, r) => c.dprobs[t * c.E + expertOfRow[r]]);
    assertClose(routingBackward(plan, dpp, 1), c.dlogits, 1e-6, 'dlogits');
    // the dense form: dprobs masked by the final map, plus the aux/z gradient
    const dense = topkRoutingBackward(plan.routing, c.dprobs.map((v, i) => v * plan.routingMap[i] * plan.routing.routingMap[i]));
    if (plan.auxDLogits) for (let i = 0; i < dense.length; i++) dense[i] += plan.auxDLogits[i];
    assertClose(dense, c.dlogits, 1e-6, 'dlogits (dense topkRoutingBackward)');
  });
}
test.run();
