// Collectives equal their mathematical definition (group sizes 1..8, uneven all-to-all splits),
// charge the alpha-beta times of cost.ts, record the expected bytes, and leak no tensors.
import { forEachBackend, tf, assert, assertClose, assertNoLeak } from './support/backends.ts';
import { Cluster } from '../src/device/cluster.ts';
import { getSpec } from '../src/device/specs.ts';
import { allGatherTime, allReduceTime, allToAllVTime, broadcastTime, reduceScatterTime, sendRecvTime, twoTierAllToAllTime } from '../src/device/cost.ts';
import type { ProcessGroup } from '../src/device/groups.ts';

// Deterministic host data: xorshift so the expected values are computed without tfjs.
function rng(seed: number) { let s = seed >>> 0 || 1; return () => { s ^= s << 13; s >>>= 0; s ^= s >> 17; s ^= s << 5; s >>>= 0; return s / 2 ** 32 - 0.5; }; }
const randArray = (n: number, r: () => number) => Float32Array.from({ length: n }, r);

const spec = getSpec('ascend-910b');
const newCluster = () => new Cluster({ spec, nodes: 2, devicesPerNode: 4 }); // group sizes > 4 span nodes
const firstN = (c: Cluster, n: number): ProcessGroup => c.group('test', Array.from({ length: n }, (_, i) => i));
const ROWS = 8, COLS = 3;

forEachBackend('collectives', (test) => {
  test('allReduce sum/mean/max equals the elementwise reduction, n = 1..8', () => {
    for (let n = 1; n <= 8; n++) {
      const c = newCluster(), g = firstN(c, n), r = rng(n);
      const host = Array.from({ length: n }, () => randArray(ROWS * COLS, r));
      const inputs = host.map((h) => tf.tensor2d(h, [ROWS, COLS]));
      for (const op of ['sum', 'mean', 'max'] as const) {
        const { outputs } = c.comm.allReduce(g, inputs, { op });
        const want = new Float32Array(ROWS * COLS).map((_, i) => {
          const xs = host.map((h) => h[i]);
          return op === 'max' ? Math.max(...xs) : xs.reduce((a, b) => a + b, 0) / (op === 'mean' ? n : 1);
        });
        assert.is(outputs.length, n);
        outputs.forEach((o, k) => assertClose(o.dataSync(), want, 1e-6, `allReduce ${op} n=${n} rank ${k}`));
        tf.dispose(outputs);
      }
      tf.dispose(inputs);
    }
  });

  test('reduceScatter gives rank i chunk i of the sum; allGather(-v) concatenates in rank order', () => {
    for (let n = 1; n <= 8; n++) {
      const c = newCluster(), g = firstN(c, n), r = rng(10 + n);
      const rows = 2 * n;
      const host = Array.from({ length: n }, () => randArray(rows * COLS, r));
      const inputs = host.map((h) => tf.tensor2d(h, [rows, COLS]));
      const { outputs } = c.comm.reduceScatter(g, inputs);
      outputs.forEach((o, i) => {
        assert.equal(o.shape, [2, COLS]);
        const want = new Float32Array(2 * COLS).map((_, j) => host.reduce((a, h) => a + h[i * 2 * COLS + j], 0));
        assertClose(o.dataSync(), want, 1e-6, `reduceScatter n=${n} rank ${i}`);
      });
      tf.dispose(outputs);
      // uneven all-gather: rank i contributes i+1 rows
      const parts = Array.from({ length: n }, (_, i) => randArray((i + 1) * COLS, r));
      const pin = parts.map((p, i) => tf.tensor2d(p, [i + 1, COLS]));
      const ag = c.comm.allGather(g, pin);
      const want = Float32Array.from(parts.flatMap((p) => [...p]));
      ag.outputs.forEach((o, i) => assertClose(o.dataSync(), want, 0, `allGather n=${n} rank ${i}`));
      tf.dispose([...ag.outputs, ...pin, ...inputs]);
    }
  });

  test('allToAllV with uneven (and zero) splits delivers rows in source order, n = 1..8', () => {
    for (let n = 1; n <= 8; n++) {
      const c = newCluster(), g = firstN(c, n), r = rng(20 + n);
      const splits = Array.from({ length: n }, (_, s) => Array.from({ length: n }, (_, d) => (s * 3 + d * 5 + n) % 4)); // includes zeros
      const rowsOf = splits.map((row) => row.reduce((a, b) => a + b, 0));
      const host = rowsOf.map((rows) => randArray(rows * COLS, r));
      const inputs = host.map((h, s) => tf.tensor2d(h, [rowsOf[s], COLS]));
      const { outputs } = c.comm.allToAllV(g, inputs, splits);
      for (let d = 0; d < n; d++) {
        const want: number[] = [];
        for (let s = 0; s < n; s++) {
          const off = splits[s].slice(0, d).reduce((a, b) => a + b, 0);
          want.push(...host[s].slice(off * COLS, (off + splits[s][d]) * COLS));
        }
        assert.equal(outputs[d].shape, [want.length / COLS, COLS], `n=${n} dest ${d} shape`);
        assertClose(outputs[d].dataSync(), want, 0, `allToAllV n=${n} dest ${d}`);
      }
      tf.dispose([...outputs, ...inputs]);
    }
  });

  test('broadcast and sendRecv copy values', () => {
    const c = newCluster();
    const x = tf.tensor2d(randArray(6, rng(3)), [2, 3]);
    const { outputs } = c.comm.broadcast(firstN(c, 5), x, 2);
    outputs.forEach((o) => assertClose(o.dataSync(), x.dataSync(), 0, 'broadcast'));
    const { output } = c.comm.sendRecv(1, 6, x);
    assertClose(output.dataSync(), x.dataSync(), 0, 'sendRecv');
    tf.dispose([...outputs, output, x]);
  });

  test('times equal the alpha-beta formulas; groups that span nodes use the inter-node link', () => {
    const c = newCluster();
    const x = Array.from({ length: 8 }, () => tf.zeros([16, 32])); // 2048 bytes each (fp32)
    const S = 16 * 32 * 4;
    for (const n of [2, 4, 8]) {
      const g = firstN(c, n), link = n > 4 ? spec.interNode : spec.intraNode, ins = x.slice(0, n);
      const ar = c.comm.allReduce(g, ins); assertClose([ar.seconds], [allReduceTime(S, n, link)], 1e-12, `allReduce n=${n}`);
      const rs = c.comm.reduceScatter(g, ins); assertClose([rs.seconds], [reduceScatterTime(S, n, link)], 1e-12, `reduceScatter n=${n}`);
      const ag = c.comm.allGather(g, ins); assertClose([ag.seconds], [allGatherTime(n * S, n, link)], 1e-12, `allGather n=${n}`);
      const bc = c.comm.broadcast(g, ins[0]); assertClose([bc.seconds], [broadcastTime(S, n, link)], 1e-12, `broadcast n=${n}`);
      const a2a = c.comm.allToAllV(g, ins.map((t) => t.slice(0, n)), undefined);
      const rowBytes = 32 * 4;
      const want = n > 4
        ? twoTierAllToAllTime({ maxIntraBytes: 3 * rowBytes, maxInterBytes: 4 * rowBytes, ranksPerNode: 4, nodes: 2 }, spec.intraNode, spec.interNode)
        : allToAllVTime((n - 1) * rowBytes, n, spec.intraNode);
      assertClose([a2a.seconds], [want], 1e-12, `allToAll n=${n}`);
      // every rank's event has that duration and they start together
      const ends = ar.events.map((e) => e.end - e.start);
      assertClose(ends, ends.map(() => ar.seconds), 1e-9, 'event durations');
      tf.dispose([...ar.outputs, ...rs.outputs, ...ag.outputs, ...bc.outputs, ...a2a.outputs]);
    }
    const sr = c.comm.sendRecv(0, 4, x[0]);
    assertClose([sr.seconds], [sendRecvTime(S, spec.interNode)], 1e-12, 'sendRecv inter');
    sr.output.dispose();
    tf.dispose(x);
  });

  test('communication ledger: ring and pairwise bytes per link type', () => {
    const c = newCluster();
    const x = Array.from({ length: 8 }, () => tf.zeros([8, 4])); // 128 bytes
    const ar = c.comm.allReduce(c.world(), x, { label: 'grads' });
    // ring 0..7: 8 messages of 2·7/8·128 bytes; 0-1-2-3 | 4-5-6-7 crosses nodes at 3->4 and 7->0
    assertClose([c.commLedger.total({ op: 'allReduce' })], [8 * 2 * 7 / 8 * 128], 1e-12, 'allReduce total');
    assertClose([c.commLedger.total({ op: 'allReduce', link: 'inter' })], [2 * 2 * 7 / 8 * 128], 1e-12, 'allReduce inter');
    const a2a = c.comm.allToAllV(c.world(), x); // 1 row (16 bytes) to each rank
    assert.is(c.commLedger.total({ op: 'allToAllV', link: 'inter' }), 8 * 4 * 16);
    assert.is(c.commLedger.total({ op: 'allToAllV', link: 'intra' }), 8 * 3 * 16);
    tf.dispose([...ar.outputs, ...a2a.outputs, ...x]);
  });

  test('bad inputs are rejected with every problem listed', () => {
    const c = newCluster();
    const a = tf.zeros([4, 2]), b = tf.zeros([3, 2]);
    assert.throws(() => c.comm.allReduce(firstN(c, 3), [a, b]), /got 2 input tensors for a group of 3 ranks; input 1 has shape \[3,2\]/);
    assert.throws(() => c.comm.reduceScatter(firstN(c, 3), [a, a, a]), /does not divide by 3/);
    assert.throws(() => c.comm.allToAllV(firstN(c, 2), [a, b], [[1, 1], [1, 1]]), /inputSplits\[0\] sums to 2 but input 0 has 4 rows; inputSplits\[1\] sums to 2 but input 1 has 3 rows/);
    assert.throws(() => c.comm.allReduce(c.group('x', [0, 99]), [a, a]), /rank 99 is outside the cluster/);
    tf.dispose([a, b]);
  });

  test('no tensor leaks; communication buffers leave the HBM ledgers at zero', async () => {
    const c = newCluster(), g = c.world();
    const x = Array.from({ length: 8 }, (_, i) => tf.fill([8, 4], i));
    await assertNoLeak(() => {
      tf.dispose(c.comm.allReduce(g, x).outputs);
      tf.dispose(c.comm.reduceScatter(g, x).outputs);
      tf.dispose(c.comm.allGather(g, x).outputs);
      tf.dispose(c.comm.allToAllV(g, x, x.map(() => [2, 0, 1, 1, 0, 3, 1, 0])).outputs);
      tf.dispose(c.comm.broadcast(g, x[0]).outputs);
      c.comm.sendRecv(0, 5, x[1]).output.dispose();
    }, 'collectives');
    assert.ok(c.devices.every((d) => d.hbm.used === 0), 'HBM back to zero');
    assert.ok(c.devices.every((d) => d.hbm.peakBy('comm') > 0), 'comm buffers were accounted');
    tf.dispose(x);
  });
});
