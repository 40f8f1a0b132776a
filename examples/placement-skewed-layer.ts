// A skewed MoE layer being re-placed: `npx tsx examples/placement-skewed-layer.ts`.
// 64 experts on 8 devices (2 nodes); the router sends Zipf(1.2)-skewed traffic, so the static contiguous
// placement leaves one device with several times the mean load. The controller (EMA 0.9 predictor, CV
// gate 0.08) re-places the layer after `period` steps; we print per-device loads before and after, then
// what redundant slots (EPLB and our local search) add on top.
import { PlacementController } from '../src/parallel/placement/controller.ts';
import { solveLayer } from '../src/parallel/placement/solve.ts';
import { meanLoads, syntheticZipfTrace } from '../src/parallel/placement/trace.ts';
import { balance, deviceLoads, type PlacementSpec } from '../src/parallel/placement/types.ts';

const N = 64, D = 8, PERIOD = 10;
const spec: PlacementSpec = { numExperts: N, numReplicas: N, numDevices: D, numNodes: 2, numGroups: 1 };
const trace = syntheticZipfTrace({ numLayers: 1, numExperts: N, steps: 2 * PERIOD, exponent: 1.2, tokensPerStep: 2048, topK: 4, drift: 0, seed: 7 });

function bars(title: string, loads: number[]): void {
  const b = balance(loads), scale = 40 / b.max;
  console.log(`\n${title}   max/mean ${b.maxOverMean.toFixed(2)}, CV ${b.cv.toFixed(2)}`);
  loads.forEach((x, d) => console.log(`  device ${d}  ${'#'.repeat(Math.round(x * scale)).padEnd(40)} ${x.toFixed(0)}`));
}

const controller = new PlacementController({ spec, numLayers: 1, solver: 'greedy', period: PERIOD });
const actual = meanLoads(trace, PERIOD, 2 * PERIOD)[0]; // the loads of the steps after re-placement
bars('static contiguous placement (device d holds experts 8d..8d+7), tokens per device', deviceLoads(controller.placement[0].physicalToLogical, actual, D));

for (let s = 0; s < PERIOD; s++) {
  const round = controller.observe(trace.steps[s]);
  if (!round) continue;
  const d = round.layers[0];
  console.log(`\nstep ${round.step}: predicted CV ${d.cvBefore.toFixed(3)} -> ${d.cvAfter.toFixed(3)}; gate (>= 0.08) ${d.replace ? 'passes: re-place' : 'fails: keep'}; ${d.moves.length} of ${N} slots migrate`);
  for (const m of d.moves.slice(0, 4)) console.log(`  slot ${m.slot} on device ${m.device}: expert ${m.from} -> ${m.to} (copy from slot ${m.source})`);
  if (d.moves.length > 4) console.log(`  ... ${d.moves.length - 4} more`);
}
bars('after greedy re-placement (no replication), measured on the next steps', deviceLoads(controller.placement[0].physicalToLogical, actual, D));

const withRedundancy = { ...spec, numReplicas: N + D }; // one redundant slot per device
const predicted = controller.tracker.predicted(0);
for (const solver of ['eplb', 'ours'] as const) {
  const layer = solveLayer(solver, predicted, withRedundancy);
  const hot = layer.logicalCount.map((c, e) => (c > 1 ? `${e}x${c}` : '')).filter(Boolean).join(' ');
  bars(`${solver} with ${N + D} slots (replicated: ${hot})`, deviceLoads(layer.physicalToLogical, actual, D));
}
