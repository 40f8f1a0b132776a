// Routing through a placement in the EP dispatcher (src/parallel/ep/physical-permute.ts): pure
// bookkeeping. The executed migration and its numbers are tested end to end in train-parallel.test.ts.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { identitySlots, toLogicalRows, toPhysicalPermute } from '../src/parallel/ep/physical-permute.ts';
import { layerFromSlots } from '../src/parallel/placement/types.ts';

// 4 experts; rows expert-major: e0: tokens 0,2  e1: token 1  e2: tokens 0,1,3  e3: token 3
const logical = {
  sortedIndices: Int32Array.from([0, 2, 1, 0, 1, 3, 3]), expertOfRow: Int32Array.from([0, 0, 1, 2, 2, 2, 3]),
  permutedProbs: Float32Array.from([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]), numRows: 7,
};

test('identity placement: the physical permute is the logical one', () => {
  const p = toPhysicalPermute(logical, identitySlots(4));
  assert.equal([...p.sortedIndices], [...logical.sortedIndices]);
  assert.equal([...p.slotOfRow], [...logical.expertOfRow]);
  assert.equal(p.tokensPerSlot, [2, 1, 3, 1]);
  assert.equal([...p.order], [0, 1, 2, 3, 4, 5, 6]);
});

test('a permutation of slots re-sorts rows slot-major; order inverts it', () => {
  const slots = [2, 0, 3, 1];                        // slot 0 holds expert 2, …
  const p = toPhysicalPermute(logical, layerFromSlots(slots, 4, 2, [1, 1, 1, 1]));
  assert.equal(p.tokensPerSlot, [3, 2, 1, 1]);
  assert.equal([...p.sortedIndices], [0, 1, 3, 0, 2, 3, 1]);
  assert.equal([...toLogicalRows(p.permutedProbs, p.order)], [...logical.permutedProbs]);
});

test('replicas: an expert\'s rows go round-robin over its replicas, every row exactly once', () => {
  const slots = [2, 0, 2, 1, 3, 2];                  // expert 2 has 3 replicas (slots 0, 2, 5)
  const p = toPhysicalPermute(logical, layerFromSlots(slots, 4, 3, [1, 1, 1, 1]));
  assert.equal(p.tokensPerSlot, [1, 2, 1, 1, 1, 1]);
  assert.equal([...p.slotOfRow], [0, 1, 1, 2, 3, 4, 5]);
  assert.equal([...p.order].sort(), [0, 1, 2, 3, 4, 5, 6]);
});

test.run();
