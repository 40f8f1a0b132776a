// The OpenBLAS thread tuner (src/backend/blas-threads.ts) on synthetic timings: it picks the faster
// thread count per GEMM size class, notices a change of load through its explorations, never
// threads tiny GEMMs, and the fixed policy ignores measurements. Pure: no backend needed.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BlasThreadTuner, MIN_PARALLEL_WORK } from '../src/backend/blas-threads.ts';

/** Run `calls` GEMMs of `work` with a synthetic cost (ms per multiply-add) per thread count; returns how many used 2 threads. */
function drive(t: BlasThreadTuner, work: number, calls: number, cost: (threads: number) => number): number {
  let two = 0;
  for (let i = 0; i < calls; i++) {
    const c = t.pick(work);
    if (c.threads === 2) two++;
    t.report(c, work, cost(c.threads) * work);
  }
  return two;
}

test('uses the faster thread count of each size class, exploring the other rarely', () => {
  const t = new BlasThreadTuner(2);
  const fast2 = drive(t, 3 << 20, 1000, (n) => (n === 2 ? 6e-9 : 10e-9));
  assert.ok(fast2 > 970, `2 threads faster: chosen ${fast2}/1000`);
  const fast1 = drive(t, 1 << 24, 1000, (n) => (n === 2 ? 12e-9 : 10e-9)); // another class, independent
  assert.ok(fast1 < 30, `1 thread faster: 2 threads chosen ${fast1}/1000`);
  const s = t.summary();
  assert.equal(s.map((c) => [c.log2Work, c.threads]), [[21, 2], [24, 1]]);
  assert.ok(Math.abs(s[0].nsMax - 6e-3) < 1e-6 && Math.abs(s[0].ns1 - 10e-3) < 1e-6, JSON.stringify(s[0]));
});

test('a change of load flips the choice within a few explorations', () => {
  const t = new BlasThreadTuner(2);
  drive(t, 3 << 20, 2000, (n) => (n === 2 ? 6e-9 : 10e-9)); // quiet: 2 threads; explorations back off
  // another process takes a core: 2 threads become 3× slower than 1
  let calls = 0, last = 2;
  for (; calls < 5000 && last === 2; calls++) {
    const c = t.pick(3 << 20);
    t.report(c, 3 << 20, (c.threads === 2 ? 30e-9 : 10e-9) * (3 << 20));
    last = t.summary()[0].threads;
  }
  assert.ok(calls < 3000, `switched to 1 thread after ${calls} calls`);
  assert.is(t.summary()[0].threads, 1);
});

test('one stalled call does not flip a settled choice', () => {
  const t = new BlasThreadTuner(2);
  drive(t, 3 << 20, 200, (n) => (n === 2 ? 6e-9 : 10e-9));
  let i = 0;
  drive(t, 3 << 20, 200, (n) => (n === 2 ? (i++ === 5 ? 1e-6 : 6e-9) : 10e-9)); // a 160× slower 2-thread call
  assert.is(t.summary()[0].threads, 2);
});

test('tiny GEMMs, max 1 thread and the fixed policy never measure', () => {
  const t = new BlasThreadTuner(2);
  const tiny = t.pick(MIN_PARALLEL_WORK - 1);
  assert.equal([tiny.threads, tiny.timed], [1, false]);
  const one = new BlasThreadTuner(1).pick(1 << 28);
  assert.equal([one.threads, one.timed], [1, false]);
  const fixed = new BlasThreadTuner(2, 1 << 25);
  assert.equal([fixed.pick(1 << 24).threads, fixed.pick(1 << 25).threads, fixed.pick(1 << 25).timed], [1, 2, false]);
  assert.equal(fixed.summary(), []);
});

test.run();
