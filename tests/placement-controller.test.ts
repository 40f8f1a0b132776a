// Load tracking (EMA), the CV gate, the periodic controller and the migration plan it emits.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { gate, LoadTracker } from '../src/parallel/placement/load-tracker.ts';
import { PlacementController } from '../src/parallel/placement/controller.ts';
import { alignToPrevious, migrationPlan } from '../src/parallel/placement/migration.ts';
import { solveLayer } from '../src/parallel/placement/solve.ts';
import { deviceLoads, PlacementError } from '../src/parallel/placement/types.ts';

const test = suite('placement-controller');
const close = (a: number[], b: number[], tol = 1e-12) => a.every((x, i) => Math.abs(x - b[i]) <= tol);

test('LoadTracker: EMA with weight 0.9, initialized by the first step; records in a step add up', () => {
  const t = new LoadTracker({ numLayers: 1, numExperts: 2 });
  t.record(0, [4, 0]); t.record(0, [6, 0]); t.endStep();
  assert.equal(t.predicted(0), [10, 0]);
  t.record(0, [0, 10]); t.endStep();
  assert.ok(close(t.predicted(0), [9, 1]), String(t.predicted(0)));
  t.record(0, [0, 10]); t.endStep();
  assert.ok(close(t.predicted(0), [8.1, 1.9]), String(t.predicted(0)));
  assert.is(t.steps, 3);
  const fast = new LoadTracker({ numLayers: 1, numExperts: 2, emaWeight: 0.5 });
  fast.record(0, [8, 0]); fast.endStep(); fast.record(0, [0, 8]); fast.endStep();
  assert.equal(fast.predicted(0), [4, 4]);
});

test('LoadTracker rejects bad options and rows with a clear message', () => {
  assert.throws(() => new LoadTracker({ numLayers: 0, numExperts: 2, emaWeight: 1 }),
    (e: unknown) => e instanceof PlacementError && (e as PlacementError).problems.length === 2);
  const t = new LoadTracker({ numLayers: 1, numExperts: 2 });
  assert.throws(() => t.record(0, [1, 2, 3]), /expected 2/);
  assert.throws(() => t.record(1, [1, 2]), /layer 1/);
});

const SPEC = { numExperts: 4, numReplicas: 4, numDevices: 2, numNodes: 1, numGroups: 1 };
const SKEW = [10, 10, 1, 1];

test('gate: replace iff the predicted device-load CV drops by at least the threshold', () => {
  const cur = solveLayer('static', SKEW, SPEC), cand = solveLayer('greedy', SKEW, SPEC);
  // static: devices 20 and 2, mean 11, CV 9/11; greedy: 11 and 11, CV 0
  const g = gate(cur, cand, SKEW, 2, 0.08);
  assert.ok(g.replace);
  assert.ok(Math.abs(g.cvBefore - 9 / 11) < 1e-12 && g.cvAfter === 0);
  assert.not.ok(gate(cur, cand, SKEW, 2, 0.9).replace);
  assert.ok(gate(cand, cand, SKEW, 2, 0).replace); // 0 >= 0: a zero threshold always accepts
});

test('controller: plans every `period` steps, adopts gated layers, emits a minimal slot migration', () => {
  const c = new PlacementController({ spec: SPEC, numLayers: 1, solver: 'greedy', period: 3 });
  assert.equal(c.placement[0].physicalToLogical, [0, 1, 2, 3]);
  assert.is(c.observe([SKEW]), null);
  assert.is(c.observe([SKEW]), null);
  const r = c.observe([SKEW])!;
  assert.is(r.step, 3);
  assert.ok(r.layers[0].replace);
  // greedy: 0->d0, 1->d1, 2->d0 (tie), 3->d1 = [0, 2, 1, 3]; aligned to [0, 1, 2, 3] only slots 1 and 2 change
  assert.equal(c.placement[0].physicalToLogical, [0, 2, 1, 3]);
  assert.equal(r.layers[0].moves, [
    { slot: 1, device: 0, from: 1, to: 2, source: 2 },
    { slot: 2, device: 1, from: 2, to: 1, source: 1 },
  ]);
  assert.equal(c.placement[0].deviceLoads, [11, 11]);
  c.observe([SKEW]); c.observe([SKEW]);
  const r2 = c.observe([SKEW])!;
  assert.not.ok(r2.layers[0].replace); // already balanced: CV 0 -> 0
  assert.equal(r2.layers[0].moves, []);
});

test('controller rejects bad options, listing every problem', () => {
  try {
    new PlacementController({ spec: { ...SPEC, numReplicas: 6 }, numLayers: 1, solver: 'greedy', period: 0, threshold: -1 });
    assert.unreachable('should throw');
  } catch (e) {
    assert.is((e as PlacementError).problems.length, 3, (e as Error).message);
  }
});

test('property: aligned placement has the same device contents; applying the moves to prev yields next', () => {
  const spec = { numExperts: 24, numReplicas: 32, numDevices: 8, numNodes: 2, numGroups: 4 };
  fc.assert(fc.property(
    fc.array(fc.integer({ min: 0, max: 500 }), { minLength: 24, maxLength: 24 }),
    fc.array(fc.integer({ min: 0, max: 500 }), { minLength: 24, maxLength: 24 }),
    (w1, w2) => {
      const prev = solveLayer('eplb', w1, spec).physicalToLogical, next = solveLayer('ours', w2, spec).physicalToLogical;
      const aligned = alignToPrevious(prev, next, spec);
      const sortedLoads = (slots: number[]) => deviceLoads(slots, w2, 8).sort((a, b) => a - b);
      assert.ok(close(sortedLoads(aligned), sortedLoads(next), 1e-9));
      const moves = migrationPlan(prev, aligned, spec);
      const applied = prev.slice();
      for (const m of moves) { assert.is(prev[m.source], m.to); applied[m.slot] = m.to; }
      assert.equal(applied, aligned);
      assert.ok(moves.length <= migrationPlan(prev, next, spec).length);
      // the source is on the target's own device whenever that device already held the expert
      for (const m of moves) {
        const local = prev.slice(m.device * 4, m.device * 4 + 4).includes(m.to);
        assert.is(Math.floor(m.source / 4) === m.device, local);
      }
    }), { numRuns: 100, seed: 5 });
});

test.run();
