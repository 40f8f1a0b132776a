// Pipeline schedules as action lists, executed by the pure simulator and drawn as ASCII Gantt charts.
//   npx tsx examples/pipeline-schedules.ts
// p = 4 ranks, M = 8 micro-batches, uniform stages with F = 1, B = 2 (per chunk: F/v, B/v).
// Also: the paper's 61 → 64 layer padding for PP × VPP balance.
import { schedule1F1B, scheduleGPipe, scheduleInterleaved, type Schedule } from '../src/parallel/pipeline/schedule.ts';
import { simulateSchedule } from '../src/parallel/pipeline/simulate.ts';
import { validateSchedule } from '../src/parallel/pipeline/validate.ts';
import { renderActions, renderGantt } from '../src/parallel/pipeline/gantt.ts';
import { partitionLayers } from '../src/parallel/pipeline/partition.ts';

const p = 4, M = 8;

function show(title: string, s: Schedule, F: number, B: number, W?: number, theory?: number): void {
  const problems = validateSchedule(s);
  const sim = simulateSchedule(s, { F, B, W });
  console.log(`\n=== ${title} ===`);
  console.log(renderActions(s));
  console.log(renderGantt(s, sim, { unit: Math.min(F, W ?? F, B - (W ?? 0)) }));
  console.log(`valid: ${problems.length === 0 ? 'yes' : problems.join('; ')}   step ${sim.stepTime}   ` +
    `bubble ${(sim.bubbleFraction * 100).toFixed(1)}%` + (theory !== undefined ? ` (formula ${(theory * 100).toFixed(1)}%)` : '') +
    `   peak in-flight per rank [${sim.peakInFlight.join(', ')}]`);
}

console.log('Legend: lowercase = forward of micro-batch a..h, UPPERCASE = its backward, * = weight-grad W, . = idle');
show('GPipe p=4 M=8', scheduleGPipe(p, M), 1, 2, undefined, (p - 1) / M);
show('1F1B p=4 M=8 (Megatron: warm-up min(p−r−1, M))', schedule1F1B(p, M), 1, 2, undefined, (p - 1) / M);
show('Interleaved 1F1B p=4 v=2 M=8 (second row: virtual chunk)', scheduleInterleaved(p, 2, M), 0.5, 1, undefined, (p - 1) / (2 * M));
show('1F1B with split backward (B = dX, W = dW; W = B/2)', schedule1F1B(p, M, { splitBackward: true }), 1, 2, 1, (p - 1) * (1 + 2 - 1) / (M * 3));

console.log('\n=== 61 layers → 64 slots, PP=4 × VPP=2 (3 dense layers cost 0.6, MoE 1.0, embedding 0.5, head 1.5) ===');
const costs = [...new Array(3).fill(0.6), ...new Array(58).fill(1)];
const part = partitionLayers(costs, 4, 2, { padTo: 64, embeddingCost: 0.5, headCost: 1.5 });
for (const c of part.chunks) {
  const noop = c.slots.filter((x) => x === null).length;
  console.log(`chunk ${c.index} (rank ${c.stage}, virtual ${c.virtual}): layers ${c.start}..${c.end - 1}  + ${noop} no-op  cost ${c.cost.toFixed(1)}`);
}
console.log(`max chunk cost ${part.maxChunkCost.toFixed(1)}, imbalance ${part.imbalance.toFixed(3)}`);
