// Timeline scheduling (start = max(stream free, deps)), exposed communication, overlap, trace export.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assertClose } from './support/backends.ts';
import { Timeline, mergeIntervals, uncoveredLength } from '../src/device/timeline.ts';

const test = suite('timeline');

test('an op starts at max(stream free, dependencies done)', () => {
  const t = new Timeline();
  const a = t.schedule({ device: 0, stream: 'compute', name: 'a', kind: 'compute', duration: 3 });
  const b = t.schedule({ device: 0, stream: 'compute', name: 'b', kind: 'compute', duration: 1 });
  const c = t.schedule({ device: 1, stream: 'comm-intra', name: 'c', kind: 'comm', duration: 2, after: [b] });
  const d = t.schedule({ device: 1, stream: 'comm-intra', name: 'd', kind: 'comm', duration: 1, notBefore: 10 });
  assert.equal([a.start, b.start, c.start, d.start], [0, 3, 4, 10]);
  assert.equal(c.deps, [b.id]);
  assert.is(t.makespan, 11);
  assert.throws(() => t.schedule({ device: 0, stream: 'compute', name: 'x', kind: 'compute', duration: -1 }), /bad duration -1/);
});

test('exposed communication = comm time not covered by compute on the same device', () => {
  const t = new Timeline();
  t.schedule({ device: 0, stream: 'compute', name: 'f0', kind: 'compute', duration: 4 });          // [0,4]
  t.schedule({ device: 0, stream: 'comm-intra', name: 'a2a', kind: 'comm', duration: 3, notBefore: 2 }); // [2,5]
  t.schedule({ device: 0, stream: 'comm-inter', name: 'ag', kind: 'comm', duration: 2, notBefore: 4 }); // [4,6]
  t.schedule({ device: 1, stream: 'compute', name: 'f1', kind: 'compute', duration: 10 });         // other device
  const [d0] = t.commSummary();
  assert.equal([d0.compute, d0.comm, d0.exposedComm], [4, 4, 2]); // comm union [2,6], covered [2,4]
  assertClose([d0.overlapRatio], [0.5], 1e-12, 'overlap');
  t.schedule({ device: 0, stream: 'host-copy', name: 'swap-out', kind: 'copy', duration: 5, notBefore: 1 }); // [1,6]
  const [e0] = t.commSummary();
  assert.equal([e0.hostCopy, e0.exposedHostCopy, e0.exposedComm], [5, 2, 2]);
  const s = t.streamSummary().find((r) => r.device === 0 && r.stream === 'compute')!;
  assert.equal([s.busy, s.idle, s.events], [4, 6, 1]);
  assert.match(t.summaryText(), /makespan 10000000.0 us/);
});

test('interval helpers', () => {
  assert.equal(mergeIntervals([{ start: 3, end: 5 }, { start: 0, end: 1 }, { start: 4, end: 7 }]), [{ start: 0, end: 1 }, { start: 3, end: 7 }]);
  assert.is(uncoveredLength([{ start: 0, end: 10 }], [{ start: 1, end: 2 }, { start: 5, end: 12 }]), 4);
  assert.is(uncoveredLength([{ start: 0, end: 1 }], []), 1);
});

test('Chrome trace: complete events in microseconds plus process/thread names', () => {
  const t = new Timeline();
  t.schedule({ device: 2, stream: 'comm-inter', name: 'allGather', kind: 'comm', duration: 5e-6, notBefore: 1e-6, args: { bytes: 1024 } });
  const { traceEvents } = t.toChromeTrace((d) => `npu${d}`);
  const x = traceEvents.find((e) => (e as { ph: string }).ph === 'X') as Record<string, unknown>;
  assert.equal([x.name, x.pid, x.tid, x.cat], ['allGather', 2, 2, 'comm']);
  assertClose([x.ts as number, x.dur as number], [1, 5], 1e-12, 'ts/dur in us');
  assert.ok(traceEvents.some((e) => JSON.stringify(e) === JSON.stringify({ ph: 'M', name: 'process_name', pid: 2, tid: 0, args: { name: 'npu2' } })));
  assert.ok(traceEvents.some((e) => JSON.stringify(e) === JSON.stringify({ ph: 'M', name: 'thread_name', pid: 2, tid: 2, args: { name: 'comm-inter' } })));
  JSON.parse(JSON.stringify({ traceEvents })); // serialisable
});

test.run();
