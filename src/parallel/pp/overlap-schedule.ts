// 1F1B for adaptive pipe overlap: each rank's steady-state F(m') is issued together with a B(m) of
// another micro-batch (pp-driver.ts pairs), so the pair can only start once B(m)'s gradient is there.
// With Megatron's warm-up (p − r − 1 forwards) the paired F would wait for the next stage's whole pair
// and the stages would run one after another; one more warm-up forward per rank (min(p − r, M), the
// last rank too) puts every rank's pair of slot k on inputs produced in slot k − 1, so all stages run
// their pairs at the same time (one more micro-batch in flight per rank: the memory price of overlap).
// Pure: action lists in the format of src/parallel/pipeline/schedule.ts.
import { withP2P, type Action, type Schedule } from '../pipeline/schedule.ts';

export function schedule1F1BOverlap(pp: number, M: number): Schedule {
  for (const [k, v] of Object.entries({ pp, M })) if (!(Number.isInteger(v) && v >= 1)) throw new Error(`${k} must be a positive integer (got ${v})`);
  const ranks: Action[][] = [];
  for (let r = 0; r < pp; r++) {
    const w = Math.min(pp - r, M), o: Action[] = [];
    for (let m = 0; m < w; m++) o.push({ kind: 'F', microBatch: m, chunk: 0 });
    for (let i = 0; i < M - w; i++) { o.push({ kind: 'F', microBatch: w + i, chunk: 0 }); o.push({ kind: 'B', microBatch: i, chunk: 0 }); }
    for (let i = M - w; i < M; i++) o.push({ kind: 'B', microBatch: i, chunk: 0 });
    ranks.push(withP2P(pp, 1, r, o as Parameters<typeof withP2P>[3]));
  }
  return { name: '1f1b', pp, vpp: 1, numMicroBatches: M, splitBackward: false, ranks };
}
