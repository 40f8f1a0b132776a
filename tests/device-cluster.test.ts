// Cluster construction and validation, node placement, compute charging and parallel layouts.
import { forEachBackend, tf, assert, assertClose } from './support/backends.ts';
import { Cluster } from '../src/device/cluster.ts';
import { getSpec } from '../src/device/specs.ts';
import { gemmTime, memoryTime } from '../src/device/cost.ts';

forEachBackend('cluster', (test) => {
  const spec = getSpec('ascend-910b');

  test('devices are numbered node-major; links follow nodes', () => {
    const c = new Cluster({ spec, nodes: 2 });
    assert.is(c.size, 16);
    assert.equal([c.device(9).node, c.device(9).localRank, c.device(9).name], [1, 1, 'npu9']);
    assert.is(c.linkBetween(0, 7), spec.intraNode);
    assert.is(c.linkBetween(7, 8), spec.interNode);
    assert.is(c.device(3).host, c.hosts[0]);
    assert.is(c.device(8).host, c.hosts[1]);
    assert.throws(() => c.device(16), /rank 16 is outside the cluster of 16 devices/);
  });

  test('bad clusters list every problem', () => {
    const bad = { ...spec, interNode: { ...spec.interNode, bandwidth: -1 } };
    assert.throws(() => new Cluster({ spec: bad, nodes: 0, devicesPerNode: 0 }),
      /3 problem\(s\):\n  - spec interNode.bandwidth: expected bytes\/s > 0, got -1\n  - nodes: expected an integer >= 1, got 0\n  - devicesPerNode: expected an integer >= 1, got 0/);
  });

  test('ops start when the stream is free and their dependencies are done; costs come from cost.ts', () => {
    const c = new Cluster({ spec, nodes: 1, devicesPerNode: 2 });
    const [d0, d1] = c.devices;
    const a = tf.ones([32, 16]) as tf.Tensor2D, b = tf.ones([16, 8]) as tf.Tensor2D;
    const mm = d0.matMul('fc1', a, b);
    assertClose(mm.result.dataSync(), new Float32Array(32 * 8).fill(16), 0, 'matMul values');
    assertClose([mm.event.end - mm.event.start], [gemmTime(32, 8, 16, spec)], 1e-12, 'gemm time');
    const mem = d1.charge('softmax', { bytes: 4e6 }, { after: [mm.event] });
    assert.is(mem.start, mm.event.end);
    assertClose([mem.end - mem.start], [memoryTime(4e6, spec)], 1e-12, 'memory op time');
    const ar = c.comm.allReduce(c.world(), [mm.result, mm.result], { after: [mem] });
    assert.ok(ar.events.every((e) => e.start === mem.end), 'the collective waits for its dependencies on every rank');
    tf.dispose([a, b, mm.result, ...ar.outputs]);
  });

  test('holdAs places collective outputs on their devices; OOM in a collective leaks nothing', () => {
    const c = new Cluster({ spec: { ...spec, hbmBytes: 4096 }, nodes: 1, devicesPerNode: 4 });
    const xs = c.devices.map(() => tf.ones([16, 16])); // 1 KiB each
    const { outputs } = c.comm.allReduce(c.world(), xs, { holdAs: 'gradients', label: 'g' });
    assert.ok(c.devices.every((d, i) => d.holds(outputs[i]) && d.hbm.usedBy('gradients') === 1024));
    const before = tf.memory().numTensors;
    assert.throws(() => c.comm.allGather(c.world(), xs, { holdAs: 'activations' }), /out of memory on npu0 HBM/);
    assert.is(tf.memory().numTensors, before, 'no tensors leaked by the failed collective');
    c.devices.forEach((d) => d.freeAll());
    assert.ok(c.devices.every((d) => d.hbm.used === 0));
    c.reset();
    assert.is(c.timeline.events.length, 0);
    assert.is(c.devices[0].hbm.peak, 0);
    tf.dispose(xs);
  });

  test('parallel layouts bind Megatron groups to the cluster', () => {
    const c = new Cluster({ spec, nodes: 2 });
    const layout = c.parallel({ tp: 8, pp: 1, ep: 2, etp: 8 });
    assert.equal(layout.group('tp', 10).ranks, [8, 9, 10, 11, 12, 13, 14, 15]);
    assert.equal(layout.group('ep', 3).ranks, [3, 11]);
    assert.is(layout.groups('dp').length, 8);
    assert.throws(() => c.parallel({ tp: 3, pp: 1 }), /not divisible by tp·cp·pp/);
  });
});
