// Fused element-wise kernels (src/backend/fused-norm.ts, fused-swiglu.ts, fused-softmax.ts, fused-rope.ts,
// fused-scatter.ts) against the stock tfjs
// formulation on random inputs, on cpu and wasm; on wasm both the SIMD path and the JS fallback
// (SIMD off, or a row length that is not a multiple of 4). Also tf.grads through the forward
// kernels (their registered gradients) against tf.grads of the stock formula, and no leaks.
// Tolerance: 2e-6 relative to the largest magnitude (float32; only the row sums are reordered).
import { forEachBackend, tf, assert, assertClose, assertNoLeak } from './support/backends.ts';
import { rmsNorm, rmsNormBackward } from '../src/backend/fused-norm.ts';
import { swiglu, swigluPacked, swigluBackward, swigluPackedBackward } from '../src/backend/fused-swiglu.ts';
import { softmaxBackward } from '../src/backend/fused-softmax.ts';
import { ropeFused } from '../src/backend/fused-rope.ts';
import { scatterAddRowsFused } from '../src/backend/fused-scatter.ts';
import { simdOptions } from '../src/backend/simd-asm.ts';

const TOL = 2e-6;
let seed = 5;
const randn = (shape: number[]) => tf.randomNormal(shape, 0, 1, 'float32', seed++);
const close = (a: tf.Tensor, b: tf.Tensor, what: string, tol = TOL) => { assert.equal(a.shape, b.shape, `${what} shape`); assertClose(a.dataSync(), b.dataSync(), tol, what); };

// stock references
const rstdRef = (x: tf.Tensor, eps: number) => tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), eps));
function normBwdRef(dy: tf.Tensor, x: tf.Tensor, rstd: tf.Tensor, g: tf.Tensor) {
  const xhat = tf.mul(x, rstd), dxhat = tf.mul(dy, g), D = x.shape[x.shape.length - 1];
  return { dx: tf.mul(rstd, tf.sub(dxhat, tf.mul(xhat, tf.mean(tf.mul(dxhat, xhat), -1, true)))), dg: tf.sum(tf.reshape(tf.mul(dy, xhat), [-1, D]), 0) };
}
const siluRef = (g: tf.Tensor) => tf.mul(g, tf.sigmoid(g));

const SHAPES = [[3, 5, 16], [7, 6], [64, 256], [2, 4]]; // D % 4 = 0 (SIMD) and not (JS)

forEachBackend('backend-fused', (test, backend) => {
  for (const simd of backend === 'wasm' ? [true, false] : [true]) {
    const tag = backend === 'wasm' ? (simd ? ' (SIMD)' : ' (JS fallback)') : '';
    test.before.each(() => { simdOptions.enabled = simd; });
    test.after.each(() => { simdOptions.enabled = true; });

    test(`rmsNorm forward and backward (with and without residual) = stock ops${tag}`, () => {
      for (const shape of SHAPES) {
        tf.tidy(() => {
          const D = shape[shape.length - 1], x = randn(shape), g = randn([D]), dy = randn(shape), res = randn(shape);
          const { y, rstd } = rmsNorm(x, g, 1e-5);
          const rRef = rstdRef(x, 1e-5);
          close(rstd, rRef, `rstd [${shape}]`);
          close(y, tf.mul(tf.mul(x, rRef), g), `y [${shape}]`);
          const ref = normBwdRef(dy, x, rRef, g);
          const a = rmsNormBackward(dy, x, rstd, g), b = rmsNormBackward(dy, x, rstd, g, res);
          close(a.dx, ref.dx, `dx [${shape}]`); close(a.dg, ref.dg, `dg [${shape}]`);
          close(b.dx, tf.add(ref.dx, res), `dx + residual [${shape}]`); close(b.dg, ref.dg, `dg (residual) [${shape}]`);
        });
      }
    });

    test(`tf.grads through rmsNorm (y and rstd outputs) = tf.grads of stock ops${tag}`, () => {
      tf.tidy(() => {
        const x = randn([6, 12]), g = randn([12]), dY = randn([6, 12]), dR = randn([6, 1]);
        const f = (fn: (x: tf.Tensor, g: tf.Tensor) => { y: tf.Tensor; rstd: tf.Tensor }) =>
          tf.grads((xx: tf.Tensor, gg: tf.Tensor) => { const o = fn(xx, gg); return tf.add(tf.sum(tf.mul(o.y, dY)), tf.sum(tf.mul(o.rstd, dR))); })([x, g]);
        const mine = f((xx, gg) => rmsNorm(xx, gg, 1e-5));
        const ref = f((xx, gg) => { const rstd = rstdRef(xx, 1e-5); return { y: tf.mul(tf.mul(xx, rstd), gg), rstd }; });
        close(mine[0], ref[0], 'dx', 1e-5); close(mine[1], ref[1], 'dg', 1e-5);
      });
    });

    test(`swiglu forward (with and without p, packed) and backward = stock ops${tag}`, () => {
      for (const [R, F] of [[9, 16], [5, 6], [300, 128]]) {
        tf.tidy(() => {
          const g = randn([R, F]), u = randn([R, F]), p = tf.randomUniform([R, 1], 0, 1, 'float32', seed++), dA = randn([R, F]);
          const act = tf.mul(siluRef(g), u);
          const a = swiglu(g, u), b = swiglu(g, u, p);
          assert.is(a.actP, null);
          close(a.act, act, `act ${R}x${F}`); close(b.act, act, `act (p) ${R}x${F}`); close(b.actP!, tf.mul(act, p), `actP ${R}x${F}`);
          const h = tf.concat([g, u], -1);
          close(swigluPacked(h), act, `packed act ${R}x${F}`);
          // backward: reference = tf.grads of sum(act·p·dA) (p given) / sum(act·dA)
          const [rg, ru, rp] = tf.grads((gg: tf.Tensor, uu: tf.Tensor, pp: tf.Tensor) => tf.sum(tf.mul(tf.mul(tf.mul(siluRef(gg), uu), pp), dA)))([g, u, p]);
          const bp = swigluBackward(dA, g, u, p);
          close(bp.dGate, rg, `dGate (p) ${R}x${F}`, 1e-5); close(bp.dUp, ru, `dUp (p) ${R}x${F}`, 1e-5); close(bp.dP!, rp, `dP ${R}x${F}`, 1e-5);
          const [rg1, ru1] = tf.grads((gg: tf.Tensor, uu: tf.Tensor) => tf.sum(tf.mul(tf.mul(siluRef(gg), uu), dA)))([g, u]);
          const bn = swigluBackward(dA, g, u);
          assert.is(bn.dP, null);
          close(bn.dGate, rg1, `dGate ${R}x${F}`, 1e-5); close(bn.dUp, ru1, `dUp ${R}x${F}`, 1e-5);
          close(swigluPackedBackward(dA, h), tf.concat([rg1, ru1], -1), `packed dh ${R}x${F}`, 1e-5);
        });
      }
    });

    test(`tf.grads through the swiglu kernels = tf.grads of stock ops${tag}`, () => {
      tf.tidy(() => {
        const g = randn([7, 8]), u = randn([7, 8]), p = tf.randomUniform([7, 1], 0, 1, 'float32', seed++), dA = randn([7, 8]), dB = randn([7, 8]);
        const mine = tf.grads((gg: tf.Tensor, uu: tf.Tensor, pp: tf.Tensor) => {
          const o = swiglu(gg, uu, pp);
          return tf.add(tf.add(tf.sum(tf.mul(o.act, dA)), tf.sum(tf.mul(o.actP!, dB))), tf.sum(tf.mul(swigluPacked(tf.concat([gg, uu], -1)), dB)));
        })([g, u, p]);
        const ref = tf.grads((gg: tf.Tensor, uu: tf.Tensor, pp: tf.Tensor) => {
          const act = tf.mul(siluRef(gg), uu);
          return tf.add(tf.add(tf.sum(tf.mul(act, dA)), tf.sum(tf.mul(tf.mul(act, pp), dB))), tf.sum(tf.mul(act, dB)));
        })([g, u, p]);
        mine.forEach((m, i) => close(m, ref[i], `grad #${i}`, 1e-5));
      });
    });

    test(`softmaxBackward (scale folded in) = tf.grad of softmax, times the scale${tag}`, () => {
      for (const shape of [[3, 8, 8], [2, 5, 7], [64, 128]]) {
        tf.tidy(() => {
          const scores = randn(shape), dprobs = randn(shape), probs = tf.softmax(scores);
          const ref = tf.mul(tf.grad((s: tf.Tensor) => tf.softmax(s))(scores, dprobs), 0.125);
          close(softmaxBackward(probs, dprobs, 0.125), ref, `dscores [${shape}]`, 1e-5);
        });
      }
      assert.throws(() => softmaxBackward(tf.ones([2, 4]), tf.ones([2, 3])), /shapes differ/);
    });

    test(`ropeFused (and its inverse, the backward) = rotate-half with stock ops; tf.grads through it${tag}`, () => {
      /** rotate-half RoPE on the last r dims of each head, written with slices (sign −1: the inverse) */
      const ref = (x: tf.Tensor, r: number, sign: number) => {
        const [B, S, n, d] = x.shape as number[], h = r / 2, off = d - r;
        const ang = tf.mul(tf.reshape(tf.range(0, S), [S, 1]), tf.reshape(tf.pow(10000, tf.div(tf.mul(tf.range(0, h), -2), r)), [1, h]));
        const c = tf.reshape(tf.cos(ang), [1, S, 1, h]), s = tf.mul(tf.reshape(tf.sin(ang), [1, S, 1, h]), sign);
        const x1 = tf.slice(x, [0, 0, 0, off], [B, S, n, h]), x2 = tf.slice(x, [0, 0, 0, off + h], [B, S, n, h]);
        const rot = [tf.sub(tf.mul(x1, c), tf.mul(x2, s)), tf.add(tf.mul(x2, c), tf.mul(x1, s))];
        return tf.concat(off ? [tf.slice(x, [0, 0, 0, 0], [B, S, n, off]), ...rot] : rot, 3);
      };
      for (const [shape, r] of [[[2, 5, 3, 8], 8], [[2, 7, 4, 48], 16], [[1, 4, 2, 6], 4], [[2, 3, 1, 16], 16]] as [number[], number][]) {
        tf.tidy(() => {
          const x = randn(shape);
          close(ropeFused(x, 10000, r), ref(x, r, 1), `rope [${shape}] r=${r}`, 1e-5);
          close(ropeFused(x, 10000, r, true), ref(x, r, -1), `inverse [${shape}] r=${r}`, 1e-5);
          const dy = randn(shape);
          const mine = tf.grad((xx: tf.Tensor) => ropeFused(xx, 10000, r))(x, dy), want = tf.grad((xx: tf.Tensor) => ref(xx, r, 1))(x, dy);
          close(mine, want, `grad [${shape}] r=${r}`, 1e-5);
          close(ropeFused(dy, 10000, r, true), want, `inverse = gradient [${shape}] r=${r}`, 1e-5);
        });
      }
    });

    test(`scatterAddRowsFused = scatterND (duplicates summed in row order, bit-equal); bad indices rejected${tag}`, () => {
      for (const [N, H, T] of [[12, 8, 5], [7, 6, 3], [600, 64, 100], [0, 8, 4]]) {
        tf.tidy(() => {
          const rows = randn([N, H]) as tf.Tensor2D, idx = Int32Array.from({ length: N }, (_, i) => (i * 7 + 3) % T);
          const want = N ? tf.scatterND(tf.tensor2d(idx, [N, 1], 'int32'), rows, [T, H]) : tf.zeros([T, H]);
          close(scatterAddRowsFused(rows, idx, T), want, `scatter ${N}x${H} → ${T}`, 0);
        });
      }
      assert.throws(() => scatterAddRowsFused(tf.ones([2, 4]) as tf.Tensor2D, new Int32Array([0, 4]), 4), /outside \[0, 4\)/);
      assert.throws(() => scatterAddRowsFused(tf.ones([2, 4]) as tf.Tensor2D, new Int32Array([0]), 4), /1 indices for 2 rows/);
    });

    test(`no tensor leaks${tag}`, async () => {
      const x = randn([4, 8]), g = randn([8]), u = randn([4, 8]), p = randn([4, 1]);
      await assertNoLeak(() => {
        const n = rmsNorm(x, g, 1e-5), nb = rmsNormBackward(x, x, n.rstd, g, u);
        const s = swiglu(x, u, p), sb = swigluBackward(x, x, u, p), h = tf.concat([x, u], -1);
        softmaxBackward(x, u, 0.5).dispose();
        scatterAddRowsFused(x as tf.Tensor2D, new Int32Array([1, 0, 1, 2]), 3).dispose();
        const x4 = tf.reshape(x, [1, 4, 1, 8]);
        tf.dispose([ropeFused(x4, 10000, 8), x4]);
        tf.dispose([n.y, n.rstd, nb.dx, nb.dg, s.act, s.actP!, sb.dGate, sb.dUp, sb.dP!, swigluPacked(h), swigluPackedBackward(x, h), h]);
      }, 'fused kernels');
      tf.dispose([x, g, u, p]);
    });
  }
});
