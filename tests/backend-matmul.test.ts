// BatchMatMul / _FusedMatMul overrides: every transpose and batch-broadcast case equals a naive
// reference, and gradients through matMul equal the naive gradient, on every backend.
import { forEachBackend, tf, assert, assertClose, assertNoLeak } from './support/backends.ts';
import { backendLabel } from '../src/backend/tf.ts';

let seed = 7;
const rand = (n: number) => Float32Array.from({ length: n }, () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1);
const size = (s: number[]) => s.reduce((a, b) => a * b, 1);

/** Naive op(A)·op(B) with numpy broadcasting of the batch dims. */
function naive(a: Float32Array, sa: number[], b: Float32Array, sb: number[], tA: boolean, tB: boolean): { v: Float32Array; shape: number[] } {
  const M = tA ? sa.at(-1)! : sa.at(-2)!, K = tA ? sa.at(-2)! : sa.at(-1)!, N = tB ? sb.at(-2)! : sb.at(-1)!;
  const ba = sa.slice(0, -2), bb = sb.slice(0, -2), r = Math.max(ba.length, bb.length);
  const pa = Array(r - ba.length).fill(1).concat(ba), pb = Array(r - bb.length).fill(1).concat(bb);
  const ob = pa.map((x, i) => Math.max(x, pb[i]));
  const v = new Float32Array(size(ob) * M * N);
  for (let o = 0; o < size(ob); o++) {
    let rem = o, ia = 0, ib = 0, sA = 1, sB = 1;
    for (let d = r - 1; d >= 0; d--) { const i = rem % ob[d]; rem = Math.floor(rem / ob[d]); ia += (pa[d] === 1 ? 0 : i) * sA; sA *= pa[d]; ib += (pb[d] === 1 ? 0 : i) * sB; sB *= pb[d]; }
    for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += a[ia * M * K + (tA ? k * M + i : i * K + k)] * b[ib * K * N + (tB ? j * K + k : k * N + j)];
      v[o * M * N + i * N + j] = s;
    }
  }
  return { v, shape: [...ob, M, N] };
}

const CASES: [number[], number[], boolean, boolean][] = [
  [[5, 7], [7, 3], false, false], [[7, 5], [7, 3], true, false], [[5, 7], [3, 7], false, true], [[7, 5], [3, 7], true, true],
  [[1, 9], [9, 13], false, false], [[9, 1], [13, 9], true, true], [[33, 65], [17, 65], false, true], [[65, 33], [65, 17], true, false],
  [[4, 5, 7], [4, 7, 3], false, false], [[4, 7, 5], [4, 3, 7], true, true], [[4, 5, 7], [7, 3], false, false],
  [[4, 5, 7], [3, 7], false, true], [[4, 7, 5], [7, 3], true, false], [[5, 7], [4, 7, 3], false, false],
  [[2, 1, 5, 7], [3, 7, 3], false, false], [[2, 3, 5, 7], [1, 3, 3, 7], false, true], [[3, 0, 4], [3, 4, 2], false, false],
];

forEachBackend('backend-matmul', (test, backend) => {
  test(`matMul = naive reference, all transpose and broadcast cases (${backend})`, () => {
    for (const [sa, sb, tA, tB] of CASES) {
      const a = rand(size(sa)), b = rand(size(sb));
      const ref = naive(a, sa, b, sb, tA, tB);
      const y = tf.matMul(tf.tensor(a, sa), tf.tensor(b, sb), tA, tB);
      assert.equal(y.shape, ref.shape, `shape of [${sa}]·[${sb}] tA=${tA} tB=${tB}`);
      assertClose(y.dataSync(), ref.v, 1e-5, `[${sa}]·[${sb}] tA=${tA} tB=${tB} on ${backendLabel()}`);
      tf.dispose(y);
    }
  });

  test('gradients of a 2-D matMul chain equal the naive VJPs', () => {
    const [M, K, N] = [6, 11, 5];
    const x = rand(M * K), w = rand(K * N), dy = rand(M * N);
    const [dx, dw] = tf.grads((X: tf.Tensor, W: tf.Tensor) => tf.matMul(X, W))([tf.tensor2d(x, [M, K]), tf.tensor2d(w, [K, N])], tf.tensor2d(dy, [M, N]));
    assertClose(dx.dataSync(), naive(dy, [M, N], w, [K, N], false, true).v, 1e-5, 'dx = dy·wᵀ');
    assertClose(dw.dataSync(), naive(x, [M, K], dy, [M, N], true, false).v, 1e-5, 'dw = xᵀ·dy');
  });

  test('gradients of a batched matMul equal the naive VJPs', () => {
    const [B, M, K, N] = [3, 4, 6, 5];
    const a = rand(B * M * K), bt = rand(B * N * K), dy = rand(B * M * N);
    const [da, dbt] = tf.grads((A: tf.Tensor, Bt: tf.Tensor) => tf.matMul(A, Bt, false, true))(
      [tf.tensor3d(a, [B, M, K]), tf.tensor3d(bt, [B, N, K])], tf.tensor3d(dy, [B, M, N]));
    assertClose(da.dataSync(), naive(dy, [B, M, N], bt, [B, N, K], false, false).v, 1e-5, 'da = dy·bt');
    assertClose(dbt.dataSync(), naive(dy, [B, M, N], a, [B, M, K], true, false).v, 1e-5, 'dbt = dyᵀ·a');
  });

  test('fused matMul with bias and relu equals matMul + add + relu, also its gradient', () => {
    for (const [tA, tB] of [[false, false], [true, false], [false, true]]) {
      const [M, K, N] = [7, 9, 5];
      const a = tf.tensor2d(rand(M * K), tA ? [K, M] : [M, K]), b = tf.tensor2d(rand(K * N), tB ? [N, K] : [K, N]), bias = tf.tensor1d(rand(N));
      const f = (x: tf.Tensor) => tf.fused.matMul({ a: x as tf.Tensor2D, b, transposeA: tA, transposeB: tB, bias, activation: 'relu' });
      const g = (x: tf.Tensor) => tf.relu(tf.add(tf.matMul(x, b, tA, tB), bias));
      assertClose(f(a).dataSync(), g(a).dataSync(), 1e-5, `fused tA=${tA} tB=${tB}`);
      assertClose(tf.grad((x: tf.Tensor) => tf.sum(tf.square(f(x))))(a).dataSync(), tf.grad((x: tf.Tensor) => tf.sum(tf.square(g(x))))(a).dataSync(), 1e-5, 'fused grad');
    }
  });

  test('results stay right when the output allocation grows the wasm heap (views taken after it)', () => {
    const [M, K, N] = [2600, 8, 2600]; // 27 MB output: more than the initial 16 MB heap
    const a = rand(M * K), bt = rand(N * K);
    const y = tf.matMul(tf.tensor2d(a, [M, K]), tf.tensor2d(bt, [N, K]), false, true).dataSync();
    for (const [i, j] of [[0, 0], [M - 1, N - 1], [1234, 77], [7, 2599]]) {
      let s = 0;
      for (let k = 0; k < K; k++) s += a[i * K + k] * bt[j * K + k];
      assertClose([y[i * N + j]], [s], 1e-5, `y[${i},${j}]`, 1);
    }
    const sl = tf.slice(tf.tensor2d(a, [M, K]), [100, 0], [2000, K]).dataSync();
    assertClose(sl, a.subarray(100 * K, 2100 * K), 0, 'slice after growth');
  });

  test('no tensor leaks through the matMul, fused and sum overrides', async () => {
    const a = tf.tensor3d(rand(60), [3, 4, 5]), b = tf.tensor2d(rand(35), [7, 5]), bias = tf.tensor1d(rand(7));
    await assertNoLeak(() => tf.dispose([tf.matMul(a, b, false, true), tf.matMul(b, b, true, false), tf.sum(a, 0),
      tf.fused.matMul({ a: b, b, transposeB: true, bias, activation: 'relu' })]), 'matMul overrides');
  });

  test('sum over leading axes (bias gradients) equals the naive sum', () => {
    const x = rand(6 * 5 * 4);
    const t = tf.tensor3d(x, [6, 5, 4]);
    const ref0 = new Float32Array(20), ref01 = new Float32Array(4);
    for (let i = 0; i < 6; i++) for (let j = 0; j < 20; j++) { ref0[j] += x[i * 20 + j]; ref01[j % 4] += x[i * 20 + j]; }
    assertClose(tf.sum(t, 0).dataSync(), ref0, 1e-6, 'sum axis 0');
    assertClose(tf.sum(t, [0, 1]).dataSync(), ref01, 1e-6, 'sum axes 0,1');
    assert.equal(tf.sum(t, 0, true).shape, [1, 5, 4]);
    assertClose(tf.sum(t, 2).dataSync(), tf.sum(t.transpose([2, 0, 1]), 0).dataSync(), 1e-6, 'sum axis 2 (stock path)');
  });
});
