// GatherV2 override (wasm: one heap copy per gathered slice) equals a naive gather for every axis,
// batchDims, dtype and index shape; out-of-range indices still throw.
import { forEachBackend, tf, assert, assertClose } from './support/backends.ts';

let seed = 13;
const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648);
const rand = (n: number) => Float32Array.from({ length: n }, () => next() / 2147483648 - 0.5);
const size = (s: number[]) => s.reduce((a, b) => a * b, 1);

/** Naive tf.gather(x, idx, axis, batchDims) on flat arrays. */
function naive(x: ArrayLike<number>, shape: number[], idx: Int32Array, idxShape: number[], axis: number, batchDims: number): number[] {
  const batch = size(shape.slice(0, batchDims)), outer = size(shape.slice(batchDims, axis)), dim = shape[axis];
  const slice = size(shape.slice(axis + 1)), per = size(idxShape.slice(batchDims));
  const out: number[] = [];
  for (let b = 0; b < batch; b++) for (let o = 0; o < outer; o++) for (let j = 0; j < per; j++) {
    const src = ((b * outer + o) * dim + idx[b * per + j]) * slice;
    for (let k = 0; k < slice; k++) out.push(x[src + k]);
  }
  return out;
}

const CASES: { shape: number[]; idxShape: number[]; axis: number; batchDims: number }[] = [
  { shape: [13, 7], idxShape: [20], axis: 0, batchDims: 0 },
  { shape: [13, 7], idxShape: [4, 3], axis: 0, batchDims: 0 },
  { shape: [5, 9, 3], idxShape: [6], axis: 1, batchDims: 0 },
  { shape: [5, 9, 3], idxShape: [11], axis: 2, batchDims: 0 },
  { shape: [4, 6, 10], idxShape: [4, 5], axis: 1, batchDims: 1 },
  { shape: [9], idxShape: [3], axis: 0, batchDims: 0 },
  { shape: [8, 64], idxShape: [0], axis: 0, batchDims: 0 },
];

forEachBackend('backend-gather', (test) => {
  test('gather equals the naive reference (axes, batchDims, float32/int32/bool)', () => {
    for (const { shape, idxShape, axis, batchDims } of CASES) {
      const x = rand(size(shape)), idx = Int32Array.from({ length: size(idxShape) }, () => next() % shape[axis]);
      const what = `gather [${shape}] idx [${idxShape}] axis ${axis} batchDims ${batchDims}`;
      const want = naive(x, shape, idx, idxShape, axis, batchDims);
      const it = tf.tensor(idx, idxShape, 'int32');
      assertClose(tf.gather(tf.tensor(x, shape), it, axis, batchDims).dataSync(), want, 0, what);
      const xi = Int32Array.from(x, (v) => Math.round(v * 1000));
      assert.equal(Array.from(tf.gather(tf.tensor(xi, shape, 'int32'), it, axis, batchDims).dataSync()), naive(xi, shape, idx, idxShape, axis, batchDims), `${what} int32`);
      const xb = Uint8Array.from(x, (v) => (v > 0 ? 1 : 0));
      assert.equal(Array.from(tf.gather(tf.tensor(xb, shape, 'bool'), it, axis, batchDims).dataSync()), naive(xb, shape, idx, idxShape, axis, batchDims), `${what} bool`);
    }
  });

  test('gather output shape follows tf semantics', () => {
    assert.equal(tf.gather(tf.ones([5, 9, 3]), tf.tensor2d([[1, 2], [3, 4]], [2, 2], 'int32'), 1).shape, [5, 2, 2, 3]);
  });

  test('out-of-range indices throw', () => {
    const before = tf.memory().numTensors;
    assert.throws(() => tf.gather(tf.ones([4, 2]), tf.tensor1d([0, 4], 'int32')), /index value 4 is not in \[0, 3\]/);
    assert.ok(tf.memory().numTensors - before <= 2, 'only the two inputs remain');
  });
});
