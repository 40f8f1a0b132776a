// HBM and host ledgers: categories, peaks, out-of-memory messages, tensors held by a device, swapping.
import { suite } from 'uvu';
import { forEachBackend, tf, assert, assertClose, assertNoLeak } from './support/backends.ts';
import { MemoryLedger, OutOfMemoryError } from '../src/device/memory.ts';
import { Cluster } from '../src/device/cluster.ts';
import { getSpec, withMemory } from '../src/device/specs.ts';
import { hostCopyTime } from '../src/device/cost.ts';

const MiB = 2 ** 20;
const ledger = suite('memory ledger');

ledger('per-category usage and peaks; back to zero after freeing everything', () => {
  const m = new MemoryLedger('npu0 HBM', 100 * MiB);
  const w = m.alloc('weights', 'w1', 40 * MiB);
  const a1 = m.alloc('activations', 'layer0.fc1', 30 * MiB);
  m.release(a1);
  const a2 = m.alloc('activations', 'layer1.fc1', 10 * MiB);
  const g = m.alloc('gradients', 'w1.grad', 40 * MiB);
  assert.is(m.used, 90 * MiB);
  assert.is(m.peak, 90 * MiB);
  assert.is(m.peakBy('activations'), 30 * MiB);
  assert.is(m.usedBy('activations'), 10 * MiB);
  for (const x of [w, a2, g]) m.release(x);
  assert.is(m.used, 0);
  assert.is(m.count, 0);
  for (const c of ['weights', 'activations', 'gradients'] as const) assert.is(m.usedBy(c), 0);
  assert.throws(() => m.release(w), /not live here \(double free\?\)/);
  m.resetPeak();
  assert.is(m.peak, 0);
});

ledger('out of memory names the device, the request, the free bytes and the largest holders', () => {
  const m = new MemoryLedger('npu3 HBM (node 0, local 3)', 64 * MiB);
  m.alloc('weights', 'experts.w1', 32 * MiB);
  m.alloc('optimizer', 'adam.m', 16 * MiB);
  m.alloc('activations', 'attn.scores', 8 * MiB);
  m.alloc('comm', 'a2a.buf', 1 * MiB);
  let err: unknown;
  try { m.alloc('activations', 'layer2.fc1', 12 * MiB); } catch (e) { err = e; }
  assert.ok(err instanceof OutOfMemoryError);
  assert.is((err as Error).message,
    "out of memory on npu3 HBM (node 0, local 3): cannot allocate 12.00 MiB for activations 'layer2.fc1'; 7.00 MiB free of 64.00 MiB; " +
    "largest holders: weights 'experts.w1' 32.00 MiB, optimizer 'adam.m' 16.00 MiB, activations 'attn.scores' 8.00 MiB");
  assert.is(m.used, 57 * MiB, 'a failed allocation changes nothing');
});
ledger.run();

forEachBackend('simulated device memory', (test) => {
  test('tensors held by a device are charged to its HBM; --device-memory makes limits bite', () => {
    const spec = withMemory(getSpec('ascend-910b'), { hbmBytes: 1 * MiB });
    const c = new Cluster({ spec, nodes: 1, devicesPerNode: 2 });
    const d = c.device(1);
    const w = d.hold(tf.zeros([256, 512]), 'weights', 'w'); // 512 KiB in fp32
    assert.is(d.hbm.usedBy('weights'), 512 * 1024);
    assert.throws(() => d.hold(tf.zeros([256, 513]), 'activations', 'too-big'), /out of memory on npu1 HBM \(node 0, local 1\): cannot allocate 513.00 KiB for activations 'too-big'; 512.00 KiB free of 1.00 MiB; largest holders: weights 'w' 512.00 KiB/);
    const bf16 = new Cluster({ spec, nodes: 1, devicesPerNode: 1, dtype: 'bf16' });
    const x = bf16.device(0).hold(tf.zeros([256, 512]), 'activations', 'x');
    assert.is(bf16.device(0).hbm.used, 256 * 1024, 'bf16 accounting: 2 bytes per element');
    bf16.device(0).free(x);
    d.free(w);
    assert.is(d.hbm.used, 0);
    assert.ok(w.isDisposed);
  });

  test('swap out to host and back: bytes move between ledgers, values survive, host-copy time charged', async () => {
    const c = new Cluster({ spec: getSpec('ascend-910b'), nodes: 1, devicesPerNode: 2 });
    const d = c.device(0);
    const vals = Float32Array.from({ length: 64 }, (_, i) => i * 0.5);
    const x = d.hold(tf.tensor2d(vals, [8, 8]), 'activations', 'layer0.input');
    const h = d.swapOut(x);
    assert.is(d.hbm.used, 0);
    assert.is(c.hosts[0].usedBy('swapped'), 256);
    assertClose([h.event.end - h.event.start], [hostCopyTime(256, d.spec)], 1e-12, 'swap-out time');
    const { tensor, event } = d.swapIn(h);
    assertClose(tensor.dataSync(), vals, 0, 'swapped values');
    assert.is(d.hbm.usedBy('activations'), 256);
    assert.is(c.hosts[0].used, 0);
    assert.ok(event.start >= h.event.end, 'swap-in after swap-out');
    d.freeAll();
    assert.is(d.hbm.used, 0);
    await assertNoLeak(() => { const t = d.hold(tf.ones([4, 4]), 'activations', 'y'); d.free(d.swapIn(d.swapOut(t)).tensor); }, 'swap round trip');
  });
});
