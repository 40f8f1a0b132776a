// UnsortedSegmentSum (missing on wasm, O(segments·N·D) on cpu), tf.grad of tf.gather on every
// backend, and the wasm oneHot dtype fix (tfjs-notes P4, P5, P11).
import { forEachBackend, tf, assert, assertClose } from './support/backends.ts';

let seed = 3;
const rand = (n: number) => Float32Array.from({ length: n }, () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1);
const randInt = (n: number, hi: number) => Int32Array.from({ length: n }, () => (seed = (seed * 1103515245 + 12345) % 2147483648) % hi);

forEachBackend('backend-segment', (test) => {
  test('unsortedSegmentSum equals a naive scatter-add (2-D, 3-D, int32, out-of-range ids dropped)', () => {
    for (const [shape, S] of [[[13, 5], 4], [[9, 2, 3], 7], [[6], 3], [[0, 4], 2]] as [number[], number][]) {
      const N = shape[0], D = shape.slice(1).reduce((a, b) => a * b, 1);
      const x = rand(N * D), ids = randInt(N, S + 1).map((v) => (v === S ? -1 : v)); // -1: dropped
      const want = new Float32Array(S * D);
      for (let i = 0; i < N; i++) if (ids[i] >= 0) for (let j = 0; j < D; j++) want[ids[i] * D + j] += x[i * D + j];
      const y = tf.unsortedSegmentSum(tf.tensor(x, shape), tf.tensor1d(ids, 'int32'), S);
      assert.equal(y.shape, [S, ...shape.slice(1)]);
      assertClose(y.dataSync(), want, 1e-6, `segmentSum [${shape}] into ${S}`);
    }
    const yi = tf.unsortedSegmentSum(tf.tensor1d([1, 2, 3, 4], 'int32'), tf.tensor1d([1, 0, 1, 1], 'int32'), 2);
    assert.is(yi.dtype, 'int32');
    assert.equal(Array.from(yi.dataSync()), [2, 8]);
  });

  test('tf.grad of tf.gather (embedding backward, duplicate indices) equals the naive scatter-add', () => {
    const [V, D, N] = [11, 6, 40];
    const table = rand(V * D), idx = randInt(N, V), dy = rand(N * D);
    const g = tf.grad((t: tf.Tensor) => tf.mul(tf.gather(t, tf.tensor1d(idx, 'int32')), tf.tensor2d(dy, [N, D])).sum())(tf.tensor2d(table, [V, D]));
    const want = new Float32Array(V * D);
    for (let i = 0; i < N; i++) for (let j = 0; j < D; j++) want[idx[i] * D + j] += dy[i * D + j];
    assertClose(g.dataSync(), want, 1e-5, 'dTable');
  });

  test('gather backward with 256 segments is fast enough to be usable (O(N·D))', () => {
    const g = tf.grad((t: tf.Tensor) => tf.gather(t, tf.tensor1d(randInt(2048, 256), 'int32')).sum())(tf.ones([256, 64]));
    assertClose([g.sum().dataSync()[0]], [2048 * 64], 1e-6, 'total gradient mass');
  });

  test('oneHot honours dtype and on/off values', () => {
    const idx = tf.tensor1d([0, 3, 2, 5, -1], 'int32');
    const f = tf.oneHot(idx, 4, 0.75, -0.5, 'float32');
    assert.is(f.dtype, 'float32');
    const want = [[0.75, -0.5, -0.5, -0.5], [-0.5, -0.5, -0.5, 0.75], [-0.5, -0.5, 0.75, -0.5], [-0.5, -0.5, -0.5, -0.5], [-0.5, -0.5, -0.5, -0.5]];
    assertClose(f.dataSync(), want.flat(), 0, 'float oneHot');
    const i = tf.oneHot(idx, 4);
    assert.is(i.dtype, 'int32');
    assert.equal(Array.from(i.dataSync()), [1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  });
});
