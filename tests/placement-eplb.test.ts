// The EPLB port against the worked example of deepseek-ai/EPLB's README and hand-computed tie rules.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { balancedPacking, rebalanceExperts, replicateExperts } from '../src/parallel/placement/eplb.ts';
import { balance, placementProblems, PlacementError } from '../src/parallel/placement/types.ts';

const test = suite('placement-eplb');

// deepseek-ai/EPLB README.md, "Interface and Example": 2 layers x 12 experts, 16 replicas, 4 groups,
// 2 nodes, 8 GPUs; hierarchical policy (4 % 2 == 0).
const README_WEIGHT = [
  [90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
  [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27],
];
const README_PHY2LOG = [
  [5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1],
  [7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1],
];
const README_SPEC = { numExperts: 12, numReplicas: 16, numDevices: 8, numNodes: 2, numGroups: 4 };

test('reproduces the deepseek-ai/EPLB README example exactly (hierarchical policy)', () => {
  const pl = rebalanceExperts(README_WEIGHT, README_SPEC);
  assert.ok(pl.hierarchical);
  assert.equal(pl.layers.map((l) => l.physicalToLogical), README_PHY2LOG);
  // logcnt follows from phy2log: the replicated experts are 1, 4, 5, 10 (layer 0) and 1, 5, 6, 8 (layer 1)
  assert.equal(pl.layers[0].logicalCount, [1, 2, 1, 1, 2, 2, 1, 1, 1, 1, 2, 1]);
  assert.equal(pl.layers[1].logicalCount, [1, 2, 1, 1, 1, 2, 2, 1, 2, 1, 1, 1]);
  assert.is(pl.maxCount, 2);
  assert.equal(placementProblems(pl), []);
  // replica ranks follow EPLB's phyrank: the original slot of expert 5 is rank 0
  assert.equal(pl.layers[0].logicalToPhysical[5], [0, 2]);
  assert.equal(pl.layers[0].logicalToPhysical[0], [12, -1]);
});

test('README example: device loads (GPU load = sum of load/count over its replicas)', () => {
  const pl = rebalanceExperts(README_WEIGHT, README_SPEC);
  assert.equal(pl.layers[0].deviceLoads, [121.5, 86.5, 125, 113, 147.5, 131.5, 156, 152]);
  const b = balance(pl.layers[0].deviceLoads);
  assert.ok(Math.abs(b.maxOverMean - 156 / 129.125) < 1e-12);
});

test('balancedPacking: heaviest first, lightest non-full pack, ties to lower index / lower pack', () => {
  assert.equal(balancedPacking([5, 5, 5, 5], 2), { pack: [0, 1, 0, 1], rank: [0, 0, 1, 1] });
  // order 1(3), 3(3), 2(2), 0(1): 1->p0, 3->p1, 2->p0 (tie 3=3), 0->p1
  assert.equal(balancedPacking([1, 3, 2, 3], 2), { pack: [1, 0, 0, 1], rank: [1, 0, 1, 0] });
  // one item per pack: identity without sorting
  assert.equal(balancedPacking([1, 9, 4], 3), { pack: [0, 1, 2], rank: [0, 0, 0] });
  assert.throws(() => balancedPacking([1, 2, 3], 2), /equal packs/);
});

test('replicateExperts: water-filling on load/count, ties to the lowest expert', () => {
  assert.equal(replicateExperts([10, 30, 20], 6), {
    physicalToLogical: [0, 1, 2, 1, 2, 1], rank: [0, 0, 0, 1, 1, 2], logicalCount: [1, 3, 2],
  });
  assert.equal(replicateExperts([6, 6], 3).physicalToLogical, [0, 1, 0]);
});

test('float32 semantics: near-ties resolve as torch float32 does', () => {
  const w = [0.3, 0.1 + 0.2]; // equal in float32, 0.30000000000000004 > 0.3 in float64
  assert.is(replicateExperts(w, 3).physicalToLogical[2], 0);
  assert.is(replicateExperts(w, 3, false).physicalToLogical[2], 1);
});

test('global policy when groups do not split over nodes (3 groups, 2 nodes)', () => {
  const spec = { ...README_SPEC, numGroups: 3 };
  const pl = rebalanceExperts(README_WEIGHT, spec);
  assert.not.ok(pl.hierarchical);
  assert.equal(placementProblems(pl), []);
  // the 4 redundant slots go to the largest load/count: 183 (e10), 165 (e5), 132 (e1), 104 (e4)
  assert.equal(pl.layers[0].logicalCount, [1, 2, 1, 1, 2, 2, 1, 1, 1, 1, 2, 1]);
  const perGpu = pl.layers[0].physicalToLogical.length / 8;
  assert.is(perGpu, 2);
});

test('bad input lists every problem before any work', () => {
  try {
    rebalanceExperts([[1, 2, 3], [1, -1]], { numExperts: 3, numReplicas: 5, numDevices: 2, numNodes: 3, numGroups: 2 });
    assert.unreachable('should throw');
  } catch (e) {
    assert.instance(e, PlacementError);
    const p = (e as PlacementError).problems;
    assert.ok(p.some((m) => m.includes('multiple of numDevices')));
    assert.ok(p.some((m) => m.includes('multiple of numNodes')));
    assert.ok(p.some((m) => m.includes('multiple of numGroups')));
    assert.is(p.length, 3);
  }
  try {
    rebalanceExperts([[1, 2, 3, 4], [1, -1, 0, 0], [1]], { numExperts: 4, numReplicas: 4, numDevices: 2, numNodes: 1, numGroups: 1 });
    assert.unreachable('should throw');
  } catch (e) {
    const p = (e as PlacementError).problems;
    assert.is(p.length, 2, p.join('; '));
  }
});

test.run();
