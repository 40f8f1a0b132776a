// Grouped GEMM for MoE experts (src/backend/grouped.ts) against a naive per-expert reference,
// including experts with zero rows, on every backend.
import { forEachBackend, tf, assert, assertClose, assertNoLeak } from './support/backends.ts';
import { groupedMatMul, groupedMatMulTransposed, groupedMatMulTransposedSum, groupedWeightGrad } from '../src/backend/grouped.ts';

let seed = 11;
const rand = (n: number) => Float32Array.from({ length: n }, () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1);

/** Naive references: y = x_e·w_e, dx = dy_e·w_eᵀ, dw_e = x_eᵀ·dy_e. */
function reference(x: Float32Array, w: Float32Array, dy: Float32Array, counts: number[], H: number, F: number) {
  const N = counts.reduce((a, b) => a + b, 0), E = counts.length;
  const y = new Float32Array(N * F), dx = new Float32Array(N * H), dw = new Float32Array(E * H * F);
  let row = 0;
  for (let e = 0; e < E; e++) {
    for (let r = row; r < row + counts[e]; r++) {
      for (let h = 0; h < H; h++) for (let f = 0; f < F; f++) {
        const wv = w[e * H * F + h * F + f];
        y[r * F + f] += x[r * H + h] * wv;
        dx[r * H + h] += dy[r * F + f] * wv;
        dw[e * H * F + h * F + f] += x[r * H + h] * dy[r * F + f];
      }
    }
    row += counts[e];
  }
  return { y, dx, dw };
}

const CASES: { counts: number[]; H: number; F: number }[] = [
  { counts: [3, 0, 5, 1], H: 7, F: 5 },
  { counts: [0, 0, 4], H: 3, F: 9 },
  { counts: [16, 16, 0, 16, 1, 31], H: 32, F: 24 },
  { counts: [1], H: 1, F: 1 },
  { counts: [0, 2, 0], H: 65, F: 17 },
];

forEachBackend('backend-grouped', (test) => {
  test('groupedMatMul / Transposed / WeightGrad equal the naive reference (zero-row experts too)', () => {
    for (const { counts, H, F } of CASES) {
      const N = counts.reduce((a, b) => a + b, 0), E = counts.length;
      const x = rand(N * H), w = rand(E * H * F), dy = rand(N * F);
      const ref = reference(x, w, dy, counts, H, F);
      const xt = tf.tensor2d(x, [N, H]), wt = tf.tensor3d(w, [E, H, F]), dyt = tf.tensor2d(dy, [N, F]);
      const y = groupedMatMul(xt, wt, counts), dx = groupedMatMulTransposed(dyt, wt, counts), dw = groupedWeightGrad(xt, dyt, counts);
      const what = `counts=[${counts}] H=${H} F=${F}`;
      assert.equal(y.shape, [N, F]); assert.equal(dx.shape, [N, H]); assert.equal(dw.shape, [E, H, F]);
      assertClose(y.dataSync(), ref.y, 1e-5, `y ${what}`);
      assertClose(dx.dataSync(), ref.dx, 1e-5, `dx ${what}`);
      assertClose(dw.dataSync(), ref.dw, 1e-5, `dw ${what}`);
      tf.dispose([xt, wt, dyt, y, dx, dw]);
    }
  });

  test('groupedMatMulTransposedSum = sum of two groupedMatMulTransposed (accumulating GEMM, beta = 1)', () => {
    for (const { counts, H, F } of CASES) {
      const N = counts.reduce((a, b) => a + b, 0), E = counts.length;
      const w = rand(E * H * F), w2 = rand(E * H * F), dy = rand(N * F), dy2 = rand(N * F);
      const r1 = reference(new Float32Array(N * H), w, dy, counts, H, F), r2 = reference(new Float32Array(N * H), w2, dy2, counts, H, F);
      const want = r1.dx.map((v, i) => v + r2.dx[i]);
      const wt = tf.tensor3d(w, [E, H, F]), w2t = tf.tensor3d(w2, [E, H, F]), dyt = tf.tensor2d(dy, [N, F]), dy2t = tf.tensor2d(dy2, [N, F]);
      const dx = groupedMatMulTransposedSum(dyt, wt, dy2t, w2t, counts);
      assert.equal(dx.shape, [N, H]);
      assertClose(dx.dataSync(), want, 1e-5, `dx counts=[${counts}] H=${H} F=${F}`);
      tf.dispose([wt, w2t, dyt, dy2t, dx]);
    }
    const w = tf.ones([2, 3, 4]) as tf.Tensor3D, dy = tf.ones([5, 4]) as tf.Tensor2D;
    assert.throws(() => groupedMatMulTransposedSum(dy, w, dy, tf.ones([2, 3, 5]) as tf.Tensor3D, [2, 3]), /inner dims differ|shapes differ/);
  });

  test('all experts empty: N = 0 gives empty outputs and zero weight grads', () => {
    const x = tf.zeros([0, 4]) as tf.Tensor2D, w = tf.ones([2, 4, 3]) as tf.Tensor3D, dy = tf.zeros([0, 3]) as tf.Tensor2D;
    assert.equal(groupedMatMul(x, w, [0, 0]).shape, [0, 3]);
    assert.equal(groupedMatMulTransposed(dy, w, [0, 0]).shape, [0, 4]);
    assertClose(groupedWeightGrad(x, dy, [0, 0]).dataSync(), new Float32Array(24), 0, 'dw');
  });

  test('bad counts are rejected with a clear message', () => {
    const x = tf.ones([4, 2]) as tf.Tensor2D, w = tf.ones([2, 2, 3]) as tf.Tensor3D;
    assert.throws(() => groupedMatMul(x, w, [1, 2]), /counts sum to 3 but there are 4 rows/);
    assert.throws(() => groupedMatMul(x, w, [4]), /w has 2 experts but counts has 1/);
    assert.throws(() => groupedMatMul(x, w, [5, -1]), /non-negative integers/);
  });

  test('no tensor leaks', async () => {
    const x = tf.ones([5, 3]) as tf.Tensor2D, w = tf.ones([2, 3, 4]) as tf.Tensor3D, dy = tf.ones([5, 4]) as tf.Tensor2D;
    await assertNoLeak(() => tf.dispose([groupedMatMul(x, w, [2, 3]), groupedMatMulTransposed(dy, w, [2, 3]), groupedMatMulTransposedSum(dy, w, dy, w, [2, 3]), groupedWeightGrad(x, dy, [0, 5])]), 'grouped ops');
  });
});
