// Solver invariants (fast-check properties), the greedy LPT by hand, and ours <= EPLB on a Zipf(1.0) trace.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { solve, solveLayer, SOLVERS } from '../src/parallel/placement/solve.ts';
import { rebalanceExperts } from '../src/parallel/placement/eplb.ts';
import { greedyPlacement, staticPlacement } from '../src/parallel/placement/greedy.ts';
import { oursLayer, oursPlacement } from '../src/parallel/placement/local-search.ts';
import { alignToPrevious } from '../src/parallel/placement/migration.ts';
import { syntheticZipfTrace } from '../src/parallel/placement/trace.ts';
import { assemble, balance, deviceLoads, placementProblems, PlacementError, type PlacementSpec } from '../src/parallel/placement/types.ts';

const test = suite('placement-solvers');

/** Random valid (spec, loads): nodes x devices/node x slots/device, groups in {1, nodes, 2 nodes}. */
const problem = fc
  .record({
    nodes: fc.constantFrom(1, 2, 4), devPerNode: fc.integer({ min: 1, max: 3 }), slots: fc.integer({ min: 1, max: 4 }),
    groupsMul: fc.constantFrom(0, 1, 2), layers: fc.integer({ min: 1, max: 2 }), seed: fc.integer(),
    expertsFrac: fc.double({ min: 0, max: 1, noNaN: true }), zeroFrac: fc.double({ min: 0, max: 0.5, noNaN: true }),
  })
  .map((r) => {
    const D = r.nodes * r.devPerNode, R = D * r.slots;
    const groups = r.groupsMul === 0 ? 1 : r.groupsMul * r.nodes;
    const maxK = Math.floor(R / groups);
    const k = Math.max(1, Math.round(r.expertsFrac * maxK));
    const spec: PlacementSpec = { numExperts: groups * k, numReplicas: R, numDevices: D, numNodes: r.nodes, numGroups: groups };
    let s = r.seed >>> 0;
    const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
    const loads = Array.from({ length: r.layers }, () =>
      Array.from({ length: spec.numExperts }, () => (rand() < r.zeroFrac ? 0 : Math.floor(rand() * 1000))));
    return { spec, loads };
  })
  .filter(({ spec }) => spec.numGroups <= spec.numReplicas);

const total = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

test('property: every solver keeps slots per device, places every expert, consistent maps, groups within a node', () => {
  fc.assert(fc.property(problem, ({ spec, loads }) => {
    for (const solver of SOLVERS) {
      if (solver === 'greedy' && spec.numReplicas !== spec.numExperts) continue;
      const pl = solve(solver, loads, spec);
      assert.equal(placementProblems(pl), [], `${solver} ${JSON.stringify(spec)}`);
      pl.layers.forEach((l, li) => {
        assert.is(l.physicalToLogical.length, spec.numReplicas); // R/D slots on each of D devices
        assert.is(total(l.logicalCount), spec.numReplicas);
        assert.ok(Math.abs(total(l.deviceLoads) - total(loads[li])) <= 1e-9 * Math.max(1, total(loads[li])));
        assert.equal(l.deviceLoads, deviceLoads(l.physicalToLogical, loads[li], spec.numDevices));
      });
    }
  }), { numRuns: 150, seed: 42 });
});

test('property: ours never has a higher max device load than EPLB; greedy without replication places each expert once', () => {
  fc.assert(fc.property(problem, ({ spec, loads }) => {
    const e = rebalanceExperts(loads, spec), o = oursPlacement(loads, spec);
    e.layers.forEach((l, i) => {
      const em = balance(l.deviceLoads).max, om = balance(o.layers[i].deviceLoads).max;
      assert.ok(om <= em * (1 + 1e-9), `ours ${om} > eplb ${em}`);
    });
    if (spec.numExperts % spec.numDevices !== 0) return;
    const noRedundancy = { ...spec, numReplicas: spec.numExperts };
    for (const l of greedyPlacement(loads, noRedundancy).layers) assert.ok(l.logicalCount.every((c) => c === 1));
  }), { numRuns: 150, seed: 7 });
});

test('property: migration-aware ours stays valid and within slack of plain ours; with unbounded slack it moves no more slots', () => {
  fc.assert(fc.property(problem, problem, ({ spec, loads }, other) => {
    const prevLoads = other.loads[0].length === spec.numExperts ? other.loads[0] : loads[0].slice().reverse();
    const previous = solveLayer('eplb', prevLoads, spec).physicalToLogical;
    const plain = oursLayer(loads[0], spec);
    const aware = oursLayer(loads[0], spec, { previous, slack: 0.01 });
    assert.equal(placementProblems(assemble('ours', spec, [aware])), []);
    assert.ok(balance(aware.deviceLoads).max <= balance(plain.deviceLoads).max * 1.01 + 1e-9);
    const moved = (slots: number[]) => slots.filter((e, p) => e !== previous[p]).length;
    const any = oursLayer(loads[0], spec, { previous, slack: Infinity }); // plain's start is among its candidates
    assert.ok(moved(any.physicalToLogical) <= moved(alignToPrevious(previous, plain.physicalToLogical, spec)));
  }), { numRuns: 100, seed: 11 });
});

test('greedy LPT by hand: heaviest expert to the least-loaded non-full device', () => {
  const spec = { numExperts: 8, numReplicas: 8, numDevices: 2, numNodes: 1, numGroups: 1 };
  const pl = greedyPlacement([[1, 2, 3, 4, 5, 6, 7, 8]], spec);
  // 8->d0, 7->d1, 6->d1, 5->d0, 4->d0 (tie 13=13), 3->d1, 2->d1 (now full), 1->d0
  assert.equal(pl.layers[0].physicalToLogical, [7, 4, 3, 0, 6, 5, 2, 1]);
  assert.equal(pl.layers[0].deviceLoads, [18, 18]);
  const st = staticPlacement([[1, 2, 3, 4, 5, 6, 7, 8]], spec);
  assert.equal(st.layers[0].deviceLoads, [10, 26]);
});

test('greedy equals EPLB (global policy) when there are no redundant slots, up to float32 rounding', () => {
  const spec = { numExperts: 16, numReplicas: 16, numDevices: 4, numNodes: 1, numGroups: 1 };
  const loads = [[9, 3, 7, 1, 12, 5, 5, 8, 2, 11, 6, 4, 10, 0, 13, 3]];
  assert.equal(greedyPlacement(loads, spec).layers[0].physicalToLogical, rebalanceExperts(loads, spec).layers[0].physicalToLogical);
});

test('greedy rejects redundant slots with a clear message', () => {
  assert.throws(() => greedyPlacement([[1, 2]], { numExperts: 2, numReplicas: 4, numDevices: 2, numNodes: 1, numGroups: 1 }),
    (e: unknown) => e instanceof PlacementError && /does not replicate/.test((e as Error).message));
});

// Issue 8 acceptance: Zipf(1.0), 256 experts, 32 devices, 32 redundant slots (R = 288).
const zipf = syntheticZipfTrace({ numLayers: 4, numExperts: 256, steps: 1, exponent: 1.0, seed: 3 });
for (const [numNodes, numGroups] of [[4, 1], [4, 8]] as const) {
  test(`Zipf(1.0) 256 experts / 32 devices / R=288, ${numGroups % numNodes === 0 ? 'hierarchical' : 'global'}: ours <= EPLB < greedy < static`, () => {
    const spec = { numExperts: 256, numReplicas: 288, numDevices: 32, numNodes, numGroups };
    const loads = zipf.steps[0];
    const mm = (pl: { layers: { deviceLoads: number[] }[] }) => pl.layers.map((l) => balance(l.deviceLoads).maxOverMean);
    const e = mm(rebalanceExperts(loads, spec)), o = mm(oursPlacement(loads, spec));
    const g = mm(greedyPlacement(loads, { ...spec, numReplicas: 256 })), s = mm(staticPlacement(loads, { ...spec, numReplicas: 256 }));
    for (let l = 0; l < 4; l++) {
      assert.ok(o[l] <= e[l] + 1e-12, `layer ${l}: ours ${o[l]} > eplb ${e[l]}`);
      assert.ok(e[l] < g[l] && g[l] < s[l], `layer ${l}: eplb ${e[l]} greedy ${g[l]} static ${s[l]}`);
    }
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    // measured (seed 3), max/mean per layer: global eplb 1.0016-1.0029, ours 1.0004-1.0005;
    // hierarchical (8 groups on 4 nodes) eplb 1.085-1.220, ours 1.084-1.218
    assert.ok(mean(o) < mean(e), `mean max/mean: ours ${mean(o)} eplb ${mean(e)}`);
  });
}

test.run();
