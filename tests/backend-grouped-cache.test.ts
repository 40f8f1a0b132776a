// The pure-wasm grouped GEMM keeps XNNPACK's packed expert weights per weight tensor
// (src/backend/grouped.ts, "weight banks"): repeated calls, a new weight tensor (possibly at the
// freed offset of the old one), the nt path's transposed copies and Variable.assign must all read
// the current weights, on both GEMM providers.
import { forEachBackend, tf, assertClose } from './support/backends.ts';
import { groupedMatMul, groupedMatMulTransposed, releaseGroupedWeightCache } from '../src/backend/grouped.ts';
import { selectGemm } from '../src/backend/tf.ts';

let seed = 5;
const rand = (n: number) => Float32Array.from({ length: n }, () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1);
function ref(x: Float32Array, w: Float32Array, counts: number[], H: number, F: number, transposed: boolean): Float32Array {
  const N = counts.reduce((a, b) => a + b, 0), out = new Float32Array(N * (transposed ? H : F));
  let row = 0;
  for (let e = 0; e < counts.length; e++) {
    for (let r = row; r < row + counts[e]; r++) for (let h = 0; h < H; h++) for (let f = 0; f < F; f++) {
      const wv = w[e * H * F + h * F + f];
      if (transposed) out[r * H + h] += x[r * F + f] * wv; else out[r * F + f] += x[r * H + h] * wv;
    }
    row += counts[e];
  }
  return out;
}

forEachBackend('backend-grouped-cache', (test, backend) => {
  test('repeated calls, new weight tensors and Variable.assign read the current weights', async () => {
    const gemms = backend === 'wasm' ? ['wasm', 'auto'] as const : [null];
    for (const g of gemms) {
      if (g) selectGemm(g, false);
      const counts = [5, 0, 3, 9], H = 12, F = 7, N = 17, E = 4;
      const x = rand(N * H), dy = rand(N * F);
      const xt = tf.tensor2d(x, [N, H]), dyt = tf.tensor2d(dy, [N, F]);
      let wv = rand(E * H * F);
      const v = tf.variable(tf.tensor3d(wv, [E, H, F]));
      for (let it = 0; it < 4; it++) {
        for (let rep = 0; rep < 2; rep++) {
          const y = groupedMatMul(xt, v as unknown as tf.Tensor3D, counts), dx = groupedMatMulTransposed(dyt, v as unknown as tf.Tensor3D, counts);
          assertClose(y.dataSync(), ref(x, wv, counts, H, F, false), 1e-5, `nn it ${it}`);
          assertClose(dx.dataSync(), ref(dy, wv, counts, H, F, true), 1e-5, `nt it ${it}`);
          tf.dispose([y, dx]);
        }
        wv = rand(E * H * F);
        if (it % 2) v.assign(tf.tensor3d(wv, [E, H, F]));
        else { // a plain tensor freed and re-created (the allocator may reuse the offset)
          const w = tf.tensor3d(wv, [E, H, F]);
          const y = groupedMatMul(xt, w, counts);
          assertClose(y.dataSync(), ref(x, wv, counts, H, F, false), 1e-5, `fresh tensor it ${it}`);
          tf.dispose([y, w]);
          const w2 = tf.tensor3d(wv.map((a) => -a), [E, H, F]);
          const y2 = groupedMatMul(xt, w2, counts);
          assertClose(y2.dataSync(), ref(x, wv.map((a) => -a), counts, H, F, false), 1e-5, `re-created tensor it ${it}`);
          tf.dispose([y2, w2]);
          v.assign(tf.tensor3d(wv, [E, H, F]));
        }
      }
      tf.dispose([xt, dyt, v]);
      releaseGroupedWeightCache();
    }
    if (backend === 'wasm') selectGemm((process.env.ULTRAMOE_GEMM ?? 'auto') as 'auto', false);
  });
});
