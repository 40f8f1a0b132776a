// Routing through a placement: vLLM's replica selector and the logical -> physical id map.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { rebalanceExperts } from '../src/parallel/placement/eplb.ts';
import { logicalLoads, mapToPhysical, selectReplica, tokensPerDevice, tokensPerPhysical } from '../src/parallel/placement/replica.ts';

const test = suite('placement-routing');
const W = [[90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86]];
const SPEC = { numExperts: 12, numReplicas: 16, numDevices: 8, numNodes: 2, numGroups: 4 };
const layer = rebalanceExperts(W, SPEC).layers[0]; // expert 5 -> slots [0, 2], expert 0 -> [12]

test('selectReplica is pos % logicalCount[e]', () => {
  assert.is(selectReplica(0, 5, layer.logicalCount), 0);
  assert.is(selectReplica(7, 5, layer.logicalCount), 1);
  assert.is(selectReplica(7, 0, layer.logicalCount), 0);
});

test('mapToPhysical: flat position t*k + j picks the replica, round-robin over the replicas', () => {
  // T = 3 tokens, k = 2: [[5, 0], [5, 10], [5, 5]]
  const phys = mapToPhysical([5, 0, 5, 10, 5, 5], layer);
  // pos 0: 5 rank 0 -> 0; pos 1: 0 -> 12; pos 2: 5 rank 0 -> 0; pos 3: 10 rank 1 -> 10; pos 4: 5 rank 0; pos 5: 5 rank 1 -> 2
  assert.equal(Array.from(phys), [0, 12, 0, 10, 0, 2]);
  assert.equal(layer.logicalToPhysical[10], [8, 10]);
  assert.throws(() => mapToPhysical([12], layer), /not an expert id/);
});

test('property: mapped ids hold the routed expert; per-expert and total tokens are conserved', () => {
  fc.assert(fc.property(fc.array(fc.integer({ min: 0, max: 11 }), { minLength: 1, maxLength: 300 }), (ids) => {
    const phys = mapToPhysical(ids, layer);
    ids.forEach((e, pos) => assert.is(layer.physicalToLogical[phys[pos]], e));
    const perPhys = tokensPerPhysical(phys, 16);
    const back = logicalLoads(perPhys, layer);
    const direct = new Array(12).fill(0);
    for (const e of ids) direct[e]++;
    assert.equal(back, direct);
    assert.is(tokensPerDevice(phys, 16, 8).reduce((a, b) => a + b, 0), ids.length);
  }), { numRuns: 200, seed: 1 });
  // all positions on one expert: pos % 2 splits exactly in half
  const phys = mapToPhysical(new Array(100).fill(5), layer);
  assert.equal(tokensPerPhysical(phys, 16).filter((x) => x > 0), [50, 50]);
});

test.run();
