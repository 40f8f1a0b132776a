// Non-copying Slice / SplitV overrides on wasm: equal to a naive reference for odd shapes, ranks
// 1-5, int32 and bool, and gradients flow through them.
import { forEachBackend, tf, assert, assertClose } from './support/backends.ts';

let seed = 5;
const rand = (n: number) => Float32Array.from({ length: n }, () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1);
const size = (s: number[]) => s.reduce((a, b) => a * b, 1);

function naiveSlice(x: ArrayLike<number>, shape: number[], begin: number[], sz: number[]): number[] {
  const out: number[] = [], r = shape.length, idx = new Array(r).fill(0);
  const strides = shape.map((_, d) => size(shape.slice(d + 1)));
  for (let k = 0; k < size(sz); k++) {
    out.push(x[idx.reduce((s, i, d) => s + (begin[d] + i) * strides[d], 0)]);
    for (let d = r - 1; d >= 0; d--) { if (++idx[d] < sz[d]) break; idx[d] = 0; }
  }
  return out;
}

const CASES: [number[], number[], number[]][] = [
  [[10], [3], [5]], [[7, 5], [2, 0], [3, 5]], [[7, 5], [1, 2], [4, 2]], [[3, 4, 5], [1, 1, 0], [2, 3, 5]],
  [[3, 4, 5], [0, 2, 3], [3, 1, 1]], [[2, 3, 4, 5], [1, 0, 1, 2], [1, 3, 2, 3]], [[2, 2, 3, 2, 3], [0, 1, 1, 0, 1], [2, 1, 2, 2, 2]],
  [[6, 4], [6, 0], [0, 4]],
];

forEachBackend('backend-slice', (test) => {
  test('slice equals the naive reference (float32, int32, bool)', () => {
    for (const [shape, begin, sz] of CASES) {
      const x = rand(size(shape));
      const want = naiveSlice(x, shape, begin, sz);
      assertClose(tf.slice(tf.tensor(x, shape), begin, sz).dataSync(), want, 0, `slice [${shape}] at [${begin}] size [${sz}]`);
      const xi = Int32Array.from(x, (v) => Math.round(v * 100));
      assert.equal(Array.from(tf.slice(tf.tensor(xi, shape, 'int32'), begin, sz).dataSync()), naiveSlice(xi, shape, begin, sz), 'int32');
      const xb = Uint8Array.from(x, (v) => (v > 0 ? 1 : 0));
      assert.equal(Array.from(tf.slice(tf.tensor(xb, shape, 'bool'), begin, sz).dataSync()), naiveSlice(xb, shape, begin, sz), 'bool');
    }
  });

  test('split along axis 0 and other axes equals slices', () => {
    const shape = [9, 4, 3], x = rand(size(shape)), t = tf.tensor(x, shape);
    for (const [splits, axis] of [[[2, 0, 4, 3], 0], [[1, 3], 1], [[2, 1], 2], [3, 0]] as [number[] | number, number][]) {
      const parts = tf.split(t, splits, axis);
      let at = 0;
      for (const p of parts) {
        const begin = [0, 0, 0]; begin[axis] = at;
        assertClose(p.dataSync(), naiveSlice(x, shape, begin, p.shape), 0, `split ${splits} axis ${axis}`);
        at += p.shape[axis];
      }
    }
  });

  test('gradients flow through slice and split', () => {
    const x = tf.tensor2d(rand(24), [6, 4]);
    const g = tf.grad((v: tf.Tensor) => {
      const [a, b] = tf.split(v, [2, 4], 0);
      return tf.add(tf.sum(tf.mul(a, 2)), tf.sum(tf.slice(b, [1, 1], [2, 2])));
    })(x);
    const want = [2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0];
    assertClose(g.dataSync(), want, 0, 'd/dx');
  });
});
