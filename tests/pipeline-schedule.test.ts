import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import {
  scheduleGPipe, schedule1F1B, scheduleInterleaved, warmup1F1B, warmupInterleaved, scheduleTable, type Schedule,
} from '../src/parallel/pipeline/schedule.ts';
import { simulateSchedule } from '../src/parallel/pipeline/simulate.ts';
import { validateSchedule } from '../src/parallel/pipeline/validate.ts';

const test = suite('pipeline schedules');
const compute = (s: Schedule, r: number) => s.ranks[r].filter((a) => a.kind === 'F' || a.kind === 'B' || a.kind === 'W');
const within = (got: number, want: number, rel: number, what: string) =>
  assert.ok(Math.abs(got - want) <= rel * want, `${what}: ${got} vs ${want}`);

test('1F1B warm-up counts are min(p − r − 1, M)', () => {
  for (const [p, M] of [[4, 8], [4, 2], [8, 3]]) {
    const s = schedule1F1B(p, M);
    for (let r = 0; r < p; r++) {
      const list = compute(s, r);
      const firstB = list.findIndex((a) => a.kind === 'B');
      // warm-up forwards, then one steady forward, then the first backward (if any steady step)
      assert.is(firstB, Math.min(warmup1F1B(p, r, M) + 1, M), `p=${p} M=${M} r=${r}`);
      assert.is(warmup1F1B(p, r, M), Math.min(p - r - 1, M));
    }
  }
});

test('1F1B order on p=4, M=8 matches Megatron (rank 1)', () => {
  const s = schedule1F1B(4, 8);
  const txt = compute(s, 1).map((a) => `${a.kind}${a.microBatch}`).join(' ');
  assert.is(txt, 'F0 F1 F2 B0 F3 B1 F4 B2 F5 B3 F6 B4 F7 B5 B6 B7');
});

test('interleaved warm-up and schedule table follow get_schedule_table', () => {
  assert.is(warmupInterleaved(4, 0, 2, 8), 3 * 2 + 4);
  assert.is(warmupInterleaved(4, 3, 2, 8), 4);
  assert.is(warmupInterleaved(4, 0, 2, 2), 4); // capped at M·v
  assert.equal(scheduleTable(6, 2, 4), [[0, 0], [1, 0], [2, 0], [3, 0], [0, 1], [1, 1], [2, 1], [3, 1], [4, 0], [5, 0], [4, 1], [5, 1]]);
  const s = scheduleInterleaved(4, 2, 8);
  for (let r = 0; r < 4; r++)
    assert.is(compute(s, r).findIndex((a) => a.kind === 'B'), warmupInterleaved(4, r, 2, 8) + 1);
  const r0 = compute(s, 0);
  assert.ok(r0.slice(0, 10).every((a) => a.kind === 'F'));
  assert.is(r0[10].kind, 'F');
  assert.equal([r0[11].kind, r0[11].microBatch, r0[11].chunk], ['B', 0, 1]); // first backward: last chunk
});

test('every schedule validates (including split backward and partial micro-batch groups)', () => {
  for (const [p, M] of [[1, 3], [2, 1], [4, 8], [4, 12], [4, 3], [8, 16]]) {
    const all = [scheduleGPipe(p, M), schedule1F1B(p, M), schedule1F1B(p, M, { splitBackward: true }),
      scheduleInterleaved(p, 2, M), scheduleInterleaved(p, 3, M, { splitBackward: true })];
    for (const s of all) assert.equal(validateSchedule(s), [], `${s.name} p=${p} v=${s.vpp} M=${M}`);
  }
});

test('property: interleaved schedules are valid for any p, v, M', () => {
  fc.assert(fc.property(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 13 }), fc.boolean(),
    (p, v, k, split) => {
      const M = k <= p ? k : p * (k - p); // M <= p or a multiple of p (the documented rule)
      assert.equal(validateSchedule(scheduleInterleaved(p, v, M, { splitBackward: split })), []);
      return true;
    }), { numRuns: 60 });
});

test('overlap_moe_expert_parallel_comm adds one warm-up forward and stays valid', () => {
  const s = scheduleInterleaved(4, 2, 8, { overlapMoeExpertParallelComm: true });
  assert.equal(validateSchedule(s), []);
  for (let r = 0; r < 4; r++)
    assert.is(compute(s, r).findIndex((a) => a.kind === 'B'), warmupInterleaved(4, r, 2, 8) + 2);
});

test('interleaved rejects partial micro-batch groups that deadlock', () => {
  assert.throws(() => scheduleInterleaved(4, 3, 5), /divisible/);
  const s = scheduleInterleaved(4, 3, 5, { allowPartialGroups: true });
  assert.ok(validateSchedule(s).some((p) => p.startsWith('deadlock')));
  assert.equal(validateSchedule(scheduleInterleaved(4, 3, 6, { allowPartialGroups: true })), []);
});

test('validator catches broken lists', () => {
  const s = schedule1F1B(4, 4);
  const swapped: Schedule = { ...s, ranks: s.ranks.map((l) => l.slice()) };
  // Rank 3 (last) runs B0 before F0.
  const l = swapped.ranks[3];
  const iF = l.findIndex((a) => a.kind === 'F' && a.microBatch === 0);
  const iB = l.findIndex((a) => a.kind === 'B' && a.microBatch === 0);
  [l[iF], l[iB]] = [l[iB], l[iF]];
  assert.ok(validateSchedule(swapped).some((p) => p.includes('before its F')));
  // Rank 0 waits for B0 before sending F1: a cross-rank deadlock (1F1B with zero warm-up on rank 0).
  const dl: Schedule = { ...s, ranks: s.ranks.map((x) => x.slice()) };
  const r0 = dl.ranks[0];
  const b0 = r0.findIndex((a) => a.kind === 'recv' && a.dir === 'bwd' && a.microBatch === 0);
  const f1 = r0.findIndex((a) => a.kind === 'F' && a.microBatch === 1);
  const moved = r0.splice(b0, 3); // recv-bwd, B0, (no send on rank 0) → recv, B0
  r0.splice(f1, 0, ...moved.filter((a) => a.kind !== 'F'));
  const probs = validateSchedule(dl);
  assert.ok(probs.some((p) => p.startsWith('deadlock') || p.includes('appears twice') || p.includes('missing')), probs.join('\n'));
  // A missing recv.
  const nr: Schedule = { ...s, ranks: s.ranks.map((x) => x.filter((a) => !(a.kind === 'recv' && a.microBatch === 2 && a.dir === 'fwd'))) };
  assert.ok(validateSchedule(nr).some((p) => p.includes('1 send(s), 0 recv(s)')));
});

test('peak in-flight: 1F1B = min(p − r, M), GPipe = M', () => {
  for (const [p, M] of [[4, 8], [4, 2], [6, 12]]) {
    const s = simulateSchedule(schedule1F1B(p, M), { F: 1, B: 2 });
    assert.equal(s.peakInFlight, Array.from({ length: p }, (_, r) => Math.min(p - r, M)));
    const g = simulateSchedule(scheduleGPipe(p, M), { F: 1, B: 2 });
    assert.equal(g.peakInFlight, new Array(p).fill(M));
  }
});

test('peak in-flight (interleaved) = warm-up + 1 chunks; activation bytes follow', () => {
  const p = 4, v = 2, M = 8;
  const s = simulateSchedule(scheduleInterleaved(p, v, M), { F: 0.5, B: 1, activationBytes: () => 10 });
  assert.equal(s.peakInFlight, [0, 1, 2, 3].map((r) => warmupInterleaved(p, r, v, M) + 1));
  assert.equal(s.peakActivationBytes, s.peakInFlight.map((n) => n * 10));
});

test('measured bubble: (p−1)/m for GPipe and 1F1B, (p−1)/(v·m) interleaved (uniform stages)', () => {
  for (const [p, M] of [[4, 8], [4, 16], [8, 32]]) {
    within(simulateSchedule(scheduleGPipe(p, M), { F: 1, B: 2 }).bubbleFraction, (p - 1) / M, 0.05, `gpipe p=${p} M=${M}`);
    within(simulateSchedule(schedule1F1B(p, M), { F: 1, B: 2 }).bubbleFraction, (p - 1) / M, 0.05, `1f1b p=${p} M=${M}`);
    for (const v of [2, 4]) {
      const sim = simulateSchedule(scheduleInterleaved(p, v, M), { F: 1 / v, B: 2 / v });
      within(sim.bubbleFraction, (p - 1) / (v * M), 0.05, `interleaved p=${p} v=${v} M=${M}`);
    }
  }
});

test('p2p latency adds to the bubble; split backward shrinks it to (p−1)(F+B−W)', () => {
  const base = simulateSchedule(schedule1F1B(4, 8), { F: 1, B: 2 });
  const lat = simulateSchedule(schedule1F1B(4, 8), { F: 1, B: 2, p2pLatency: 0.1 });
  assert.ok(lat.stepTime > base.stepTime);
  // At least one forward and one backward traversal of the 3 stage boundaries; measured 16 hops
  // (latency also delays every steady-state F→B round trip between neighbours).
  assert.ok(lat.stepTime - base.stepTime >= 6 * 0.1 - 1e-9);
  assert.ok(Math.abs(lat.stepTime - base.stepTime - 1.6) < 1e-9);
  const split = simulateSchedule(schedule1F1B(4, 8, { splitBackward: true }), { F: 1, B: 2, W: 1 });
  within(split.bubbleFraction, (3 * (1 + 2 - 1)) / (8 * 3), 1e-9, 'split bubble');
});

test.run();
