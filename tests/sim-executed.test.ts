// Analytical simulate() versus one executed training step on the simulated Ascend 910B cluster
// (src/sim/executed.ts, docs/simulator-executed.md). Both sides price every op with src/device/cost.ts;
// this pins that they also compose them the same way: step time within 5% on ≥ 5 small configurations
// (EP 2/4/8, DP 2/4/8, TP 2, one and two nodes, dense + MoE layers; the example adds the hierarchical
// all-to-all and expert-DP 2),
// with the communication components equal where the composition is identical. Simulated time only
// (deterministic), no wall-clock assertions.
import { forEachBackend, assert } from './support/backends.ts';
import { compareExecuted, EXEC_CASES, type ExecComparison } from '../src/sim/executed.ts';

const TOL = 0.05;
const PICK = ['ep2 dp2', 'ep4 dp4', 'ep8 dp8 2 nodes', 'tp2 ep2 dp2', 'dense+moe ep4 dp4'];
const rel = (a: number, b: number) => Math.abs(a / b - 1);

forEachBackend('simulate() vs executed step', (test) => {
  const results: ExecComparison[] = [];
  for (const name of PICK) {
    const c = EXEC_CASES.find((x) => x.name === name)!;
    test(`${name} (${c.layout}): step time within 5%`, () => {
      const r = compareExecuted(c);
      results.push(r);
      assert.ok(Math.abs(r.relError) < TOL, `${name}: analytical ${r.analytical.total * 1e6} µs vs executed ${r.executed.total * 1e6} µs (${(100 * r.relError).toFixed(2)}%)`);
      assert.ok(r.imbalance >= 1 && r.imbalance < 2, `ρ ${r.imbalance}`);
      // the gradient all-reduce composes identically without TP: one collective per tensor, same group, same link
      if (!c.layout.includes('tp')) assert.ok(rel(r.analytical.dp, r.executed.dp) < 1e-3, `${name} DP ${r.analytical.dp} vs ${r.executed.dp}`);
      // compute agrees within the imbalance statistic (per-layer max of ranks vs the slowest rank's own work)
      assert.ok(rel(r.analytical.compute, r.executed.compute) < 0.05, `${name} compute ${r.analytical.compute} vs ${r.executed.compute}`);
    });
  }
  test('flat EP all-to-all on one node: analytical EP comm equals the executed busy time', () => {
    for (const r of results.filter((x) => !x.case.devicesPerNode && !x.case.layout.includes('tp')))
      assert.ok(rel(r.analytical.ep, r.executed.ep) < 0.02, `${r.case.name} EP ${r.analytical.ep} vs ${r.executed.ep}`);
  });
  test('at least 5 configurations within 5%', () => {
    assert.ok(results.filter((r) => Math.abs(r.relError) < TOL).length >= 5);
  });
}, ['wasm']);
