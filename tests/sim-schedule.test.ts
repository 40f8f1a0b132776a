// Pipeline bubble and in-flight micro-batch formulas (src/sim/schedule.ts; perf-model.md §2.5).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assertClose } from './support/backends.ts';
import { bubbleFraction, bubbleTime, inFlightMicroBatches, defaultSchedule, stageSplit } from '../src/sim/schedule.ts';

const test = suite('sim-schedule');

test('1F1B and GPipe bubble = (p−1)/m of the ideal time', () => {
  for (const [p, m] of [[4, 8], [16, 64], [8, 128]]) {
    assertClose([bubbleFraction('1f1b', p, 1, m)], [(p - 1) / m], 1e-12, `1f1b p${p} m${m}`);
    assertClose([bubbleFraction('gpipe', p, 1, m)], [(p - 1) / m], 1e-12, `gpipe p${p} m${m}`);
  }
});

test('interleaved bubble = (p−1)/(v·m)', () => {
  assertClose([bubbleFraction('interleaved', 16, 2, 64)], [15 / 128], 1e-12, 'paper layout');
  assertClose([bubbleFraction('interleaved', 8, 4, 32)], [7 / 128], 1e-12);
});

test('zero-bubble and DualPipe (DSv3 Table 2)', () => {
  const F = 1, B = 2, W = 1;
  assert.is(bubbleTime('zero-bubble', 8, 1, F, B, W), 7 * (F + B - 2 * W));
  assert.is(bubbleTime('dualpipe', 8, 1, F, B, W), 3 * (F + B + B - 3 * W));
  assert.is(bubbleTime('1f1b', 1, 1, F, B), 0);
});

test('in-flight micro-batches: 1F1B min(p, m), interleaved × (1 + (p−1)/(p·v)), GPipe m', () => {
  assert.is(inFlightMicroBatches('1f1b', 8, 1, 64), 8);
  assert.is(inFlightMicroBatches('1f1b', 8, 1, 4), 4);
  assertClose([inFlightMicroBatches('interleaved', 16, 2, 64)], [16 * (1 + 15 / 32)], 1e-12);
  assert.is(inFlightMicroBatches('gpipe', 8, 1, 64), 64);
  assert.is(inFlightMicroBatches('dualpipe', 16, 1, 64), 17);
  assert.is(inFlightMicroBatches('1f1b', 8, 1, 64, 1), 9);
  assert.is(defaultSchedule(16, 2), 'interleaved');
  assert.is(defaultSchedule(16, 1), '1f1b');
});

test('stage split: uniform padding without a head; the last stage lightened for the output head', () => {
  // 62 pipeline layers on PP16 × VPP2: 4 per stage (64 slots, 2 no-op layers on the last stage)
  assert.equal(stageSplit(62, 16, 2, 0), { per: 4, last: 2 });
  // a head worth 2 layers fits beside the last 2 layers without exceeding 4
  assert.equal(stageSplit(62, 16, 2, 2), { per: 4, last: 2 });
  // a head worth 3.5 layers: moving one layer off the last stage gives max(5, 1 + 3.5) = 5 < 2 + 3.5
  assert.equal(stageSplit(62, 16, 2, 3.5), { per: 5, last: 1 });
  // 61 pipeline layers: 15 × 4 + 1 + head 3.5 = 4.5
  assert.equal(stageSplit(61, 16, 2, 3.5), { per: 4, last: 1 });
  // DualPipe pairs the first and the last stage on rank 0: (per + last + head) / 2
  assert.equal(stageSplit(62, 16, 1, 3, true), { per: 4, last: 2 });
  assert.equal(stageSplit(60, 1, 1, 3), { per: 60, last: 60 });
  // never loses a layer
  for (const [n, p, v, hl] of [[62, 16, 2, 3.5], [69, 3, 4, 3], [58, 8, 1, 0.5], [70, 64, 1, 9]]) {
    const s = stageSplit(n, p, v, hl);
    assert.ok(s.per * (p - 1) + s.last >= n && s.last >= 0, JSON.stringify({ n, p, v, hl, s }));
  }
});

test.run();
