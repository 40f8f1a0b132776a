// A pure discrete-event simulator for pipeline action lists.
//
// Each rank executes its list in order on one compute stream. F(mb, s) may start once the output
// of F(mb, s − 1) has arrived (end + p2pLatency when it crossed ranks); B(mb, s) once the input-grad
// of B(mb, s + 1) has arrived (the last stage: once its own F is done); W(mb, s) after B(mb, s).
// 'recv' waits for the same arrival (it is the executor's blocking point); 'send' is asynchronous
// and costs `sendCost` on the sender. The simulator does not need the p2p actions to be present.
import { type Action, type ComputeKind, type Schedule, stageOf, rankOfStage } from './schedule.ts';

export type CostFn = (rank: number, chunk: number, microBatch: number) => number;

export interface PipelineCosts {
  /** Forward time of one micro-batch on one chunk. */
  F: number | CostFn;
  /** Full backward time (input-grad + weight-grad). */
  B: number | CostFn;
  /** Weight-grad part of B; used only by split-backward schedules (B then costs B − W). */
  W?: number | CostFn;
  p2pLatency?: number;
  sendCost?: number;
  /** Stored activation bytes of one in-flight (mb, chunk) on a rank, for the peak-memory report. */
  activationBytes?: (rank: number, chunk: number) => number;
}

export interface TimedAction { action: Action; start: number; end: number }

export interface SimResult {
  /** timeline[r][i] = times of schedule.ranks[r][i]. */
  timeline: TimedAction[][];
  stepTime: number;
  /** Compute time per rank. */
  busy: number[];
  /** Bubble relative to the ideal (busy) time, the (p−1)/m of the papers: (step − mean busy) / mean busy. */
  bubbleFraction: number;
  /** Share of the step a rank idles on average: 1 − mean busy / step. */
  idleFraction: number;
  /** Max number of (mb, chunk) forwards whose backward has not run, per rank. */
  peakInFlight: number[];
  /** Same, weighted by activationBytes (0 when not given). */
  peakActivationBytes: number[];
  /** Set when some rank can never proceed: its stuck action per rank (-1 = finished). */
  deadlock: number[] | null;
}

const val = (c: number | CostFn | undefined, r: number, ch: number, m: number) =>
  c === undefined ? 0 : typeof c === 'number' ? c : c(r, ch, m);

export function simulateSchedule(s: Schedule, costs: PipelineCosts): SimResult {
  const { pp, vpp, numMicroBatches: M } = s;
  const S = pp * vpp;
  const lat = costs.p2pLatency ?? 0;
  // ready[kind][stage*M + mb]: time the input of that compute becomes available on its rank.
  const fReady = new Float64Array(S * M).fill(Infinity);
  const bReady = new Float64Array(S * M).fill(Infinity);
  const wReady = new Float64Array(S * M).fill(Infinity);
  for (let m = 0; m < M; m++) fReady[m] = 0; // stage 0 reads the data loader
  const clock = new Float64Array(pp);
  const ptr = new Int32Array(pp);
  const busy = new Array(pp).fill(0);
  const inFlight = new Array(pp).fill(0), peak = new Array(pp).fill(0);
  const bytesNow = new Array(pp).fill(0), peakBytes = new Array(pp).fill(0);
  const timeline: TimedAction[][] = s.ranks.map((l) => new Array(l.length));
  const dur = (k: ComputeKind, r: number, c: number, m: number) => {
    if (k === 'F') return val(costs.F, r, c, m);
    const w = s.splitBackward ? val(costs.W, r, c, m) : 0;
    return k === 'B' ? val(costs.B, r, c, m) - w : w;
  };

  const readyTime = (r: number, a: Action): number => {
    const st = stageOf(pp, r, a.chunk);
    const idx = st * M + a.microBatch;
    if (a.kind === 'F') return fReady[idx];
    if (a.kind === 'B') return bReady[idx];
    if (a.kind === 'W') return wReady[idx];
    if (a.kind === 'recv') return a.dir === 'fwd' ? fReady[idx] : bReady[idx];
    return 0; // send: its compute already ran earlier in this list (validator checks that)
  };

  let remaining = s.ranks.reduce((a, l) => a + l.length, 0);
  while (remaining > 0) {
    let progressed = false;
    for (let r = 0; r < pp; r++) {
      while (ptr[r] < s.ranks[r].length) {
        const a = s.ranks[r][ptr[r]];
        const ready = readyTime(r, a);
        if (!Number.isFinite(ready)) break;
        const start = Math.max(clock[r], ready);
        let end = start;
        const st = stageOf(pp, r, a.chunk), m = a.microBatch;
        if (a.kind === 'send') end = start + (costs.sendCost ?? 0);
        else if (a.kind !== 'recv') {
          end = start + dur(a.kind, r, a.chunk, m);
          busy[r] += end - start;
          if (a.kind === 'F') {
            if (st + 1 < S) fReady[(st + 1) * M + m] = end + (rankOfStage(pp, st + 1) === r ? 0 : lat);
            else bReady[st * M + m] = end; // loss computed: last stage's backward may start
            inFlight[r]++;
            bytesNow[r] += costs.activationBytes?.(r, a.chunk) ?? 0;
            peak[r] = Math.max(peak[r], inFlight[r]);
            peakBytes[r] = Math.max(peakBytes[r], bytesNow[r]);
          } else if (a.kind === 'B') {
            if (st > 0) bReady[(st - 1) * M + m] = end + (rankOfStage(pp, st - 1) === r ? 0 : lat);
            wReady[st * M + m] = end;
            inFlight[r]--;
            bytesNow[r] -= costs.activationBytes?.(r, a.chunk) ?? 0;
          }
        }
        timeline[r][ptr[r]] = { action: a, start, end };
        clock[r] = end;
        ptr[r]++;
        remaining--;
        progressed = true;
      }
    }
    if (!progressed) break;
  }

  const deadlock = remaining > 0 ? Array.from(ptr, (p, r) => (p < s.ranks[r].length ? p : -1)) : null;
  const stepTime = Math.max(0, ...clock);
  const meanBusy = busy.reduce((a, b) => a + b, 0) / pp;
  return {
    timeline, stepTime, busy,
    bubbleFraction: meanBusy > 0 ? (stepTime - meanBusy) / meanBusy : 0,
    idleFraction: stepTime > 0 ? 1 - meanBusy / stepTime : 0,
    peakInFlight: peak, peakActivationBytes: peakBytes, deadlock,
  };
}
