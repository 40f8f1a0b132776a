// Analytical simulate() versus one executed training step on the simulated Ascend 910B cluster, on small
// MoE configurations (docs/simulator-executed.md): step time, relative error (and the error before the
// composition fixes: coarse executed charges, no launches / metadata collectives / per-tensor gradient
// all-reduces in the analytical model), and the per-component breakdown: executed busy time of the slowest
// rank / analytical, µs.
//   npx tsx examples/sim-vs-executed.ts
import { comparisonTable, runComparisons } from '../src/sim/executed.ts';

const rs = await runComparisons();
const naive = await runComparisons(undefined, { naive: true });
console.log(comparisonTable(rs, naive));
const worst = Math.max(...rs.map((r) => Math.abs(r.relError)));
console.log(`\nworst |error| ${(100 * worst).toFixed(1)}% over ${rs.length} configurations (before: ${(100 * Math.max(...naive.map((r) => Math.abs(r.relError)))).toFixed(1)}%)`);
