// Fused rotary position embedding (rotate-half), one kernel instead of a [d, d] GEMM, two multiplies,
// an add and three constant uploads per call (src/model/rope.ts's formulation):
//   x [B, S, n, d], rotary part = the last r dims of each head, h = r/2, angle a_{s,i} = s·θ^(−2i/r):
//   y[j] = x[j]·cos − x[j+h]·sin,  y[j+h] = x[j+h]·cos + x[j]·sin      (j < h, within the rotary part)
//   the other d − r dims are copied. `inverse` negates sin: the backward dx = dy·cos + (dy·sin)·Rᵀ.
// Bit-equal to the GEMM formulation (x·R only negates and moves elements; the non-rotary dims are
// x·1 + 0). Tables cos/sin [S, h] are computed on the host once per (S, r, θ) and kept as tensors.
// wasm: SIMD when h and d − r are multiples of 4, else JS; cpu: JS. Has a gradient (the inverse).
import { tf } from './tfjs.ts';
import { fusedKernels, hasKernel, runFused, type FusedSpec } from './fused-kernel.ts';
import { I32, op, loop, at, simdModule, type FnDef } from './simd-asm.ts';

export const ROPE = 'UltramoeRope';
interface Attrs { rotary: number; inverse: boolean }

// rope(x, cos, sin, y, P, S, n, d, r) over P = B·S positions of n heads of d floats
function ropeFn(inverse: boolean): FnDef {
  const [x, cos, sin, y, P, S, n, d, r] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const [p, hd, j, oX, oY, oT, db, off, hb, nb] = [9, 10, 11, 12, 13, 14, 15, 16, 17, 18];
  const [x1, x2, c, sn] = [19, 20, 21, 22];
  const ld = (base: number, extra: number[] = []) => [...at(base, j), ...extra, ...op.vload];
  const plusHb = [...op.get(hb), ...op.iadd];
  return {
    name: inverse ? 'rope_inv' : 'rope', params: Array(9).fill(I32), locals: [...Array(10).fill(I32), 0x7b, 0x7b, 0x7b, 0x7b],
    body: [
      ...op.get(d), ...op.i32(4), ...op.imul, ...op.set(db),
      ...op.get(d), ...op.get(r), ...op.isub, ...op.i32(4), ...op.imul, ...op.set(nb),    // bytes of the copied part
      ...op.get(r), ...op.i32(2), ...op.imul, ...op.set(hb),                              // bytes of a half: (r/2)·4
      ...loop(p, op.i32(0), op.get(P), 1, [
        // table row of position s = p mod S
        ...op.get(p), ...op.get(S), 0x70 /* i32.rem_u */, ...op.get(hb), ...op.imul, ...op.set(oT),
        ...loop(hd, op.i32(0), op.get(n), 1, [
          ...op.get(p), ...op.get(n), ...op.imul, ...op.get(hd), ...op.iadd, ...op.get(db), ...op.imul, ...op.set(off),
          ...op.get(x), ...op.get(off), ...op.iadd, ...op.set(oX),
          ...op.get(y), ...op.get(off), ...op.iadd, ...op.set(oY),
          ...loop(j, op.i32(0), op.get(nb), 16, [...at(oY, j), ...ld(oX), ...op.vstore]),
          ...op.get(oX), ...op.get(nb), ...op.iadd, ...op.set(oX),
          ...op.get(oY), ...op.get(nb), ...op.iadd, ...op.set(oY),
          ...loop(j, op.i32(0), op.get(hb), 16, [
            ...ld(oX), ...op.set(x1), ...ld(oX, plusHb), ...op.set(x2),
            ...op.get(cos), ...op.get(oT), ...op.iadd, ...op.get(j), ...op.iadd, ...op.vload, ...op.set(c),
            ...op.get(sin), ...op.get(oT), ...op.iadd, ...op.get(j), ...op.iadd, ...op.vload, ...op.set(sn),
            // forward: y1 = x1·c − x2·s, y2 = x2·c + x1·s; inverse: y1 = x1·c + x2·s, y2 = x2·c − x1·s
            ...at(oY, j), ...op.get(x1), ...op.get(c), ...op.vmul, ...op.get(x2), ...op.get(sn), ...op.vmul, ...(inverse ? op.vadd : op.vsub), ...op.vstore,
            ...at(oY, j), ...plusHb, ...op.get(x2), ...op.get(c), ...op.vmul, ...op.get(x1), ...op.get(sn), ...op.vmul, ...(inverse ? op.vsub : op.vadd), ...op.vstore,
          ]),
        ]),
      ]),
    ],
  };
}
const ropeSimd = simdModule<{ rope(...a: number[]): void; rope_inv(...a: number[]): void }>(() => [ropeFn(false), ropeFn(true)]);

const fr = Math.fround;
const spec: FusedSpec<Attrs> = {
  name: ROPE,
  outShapes: ({ x }) => [x!.shape],
  js: ({ x, cos, sin }, [y], { x: xi }, { rotary, inverse }) => {
    const [B, S, n, d] = xi!.shape, h = rotary / 2, off = d - rotary, sg = inverse ? -1 : 1;
    for (let p = 0; p < B * S; p++) {
      const t = (p % S) * h;
      for (let hd = 0; hd < n; hd++) {
        const o = (p * n + hd) * d;
        for (let j = 0; j < off; j++) y[o + j] = x![o + j];
        for (let j = 0; j < h; j++) {
          const x1 = x![o + off + j], x2 = x![o + off + h + j], c = cos![t + j], s = sin![t + j];
          y[o + off + j] = fr(x1 * c) - sg * fr(x2 * s);
          y[o + off + h + j] = fr(x2 * c) + sg * fr(x1 * s);
        }
      }
    }
  },
  simd: (b, o, [y], { x }, { rotary, inverse }) => {
    const [B, S, n, d] = x!.shape, k = ropeSimd(b);
    if (!k || (rotary / 2) % 4 !== 0 || (d - rotary) % 4 !== 0) return false;
    (inverse ? k.rope_inv : k.rope)(o.x, o.cos, o.sin, y, B * S, S, n, d, rotary);
    return true;
  },
};
export const ropeKernels = fusedKernels(spec);

// Gradient in stock ops (independent of the kernel, for tf.grads oracles): with rot(x) = [0 | −x2 | x1]
// (per head: copied part, first half, second half), y = x·c + σ·rot(x)·s (σ = −1 for the inverse), so
// dx = dy·c + σ·rotᵀ(dy·s), rotᵀ(v) = [0 | v2 | −v1]; c = [1 | cos | cos], s = [0 | sin | sin].
tf.registerGradient({
  kernelName: ROPE, inputsToSave: ['cos', 'sin'],
  gradFunc: (dy, saved, attrs) => {
    const { rotary, inverse } = attrs as unknown as Attrs, [cos, sin] = saved, g = dy as tf.Tensor;
    const [B, S, n, d] = g.shape, h = rotary / 2, off = d - rotary;
    const full = (t: tf.Tensor, fill: number) => tf.reshape(tf.concat([...(off ? [tf.fill([S, off], fill)] : []), t, t], 1), [1, S, 1, d]);
    return {
      x: () => {
        const v = tf.mul(g, full(sin, 0));
        const v1 = tf.slice(v, [0, 0, 0, off], [B, S, n, h]), v2 = tf.slice(v, [0, 0, 0, off + h], [B, S, n, h]);
        const rotT = tf.concat([...(off ? [tf.zeros([B, S, n, off])] : []), v2, tf.neg(v1)], 3);
        return tf.add(tf.mul(g, full(cos, 1)), inverse ? tf.neg(rotT) : rotT);
      },
      cos: () => tf.zerosLike(cos), sin: () => tf.zerosLike(sin),
    };
  },
});

const tables = new Map<string, { cos: tf.Tensor; sin: tf.Tensor }>();
/** cos/sin [S, r/2] of a_{s,i} = pos_s·θ^(−2i/r) (pos_s = s unless `positions` [S] is given: context
 *  parallelism's global positions), kept (one pair per (S, r, θ, backend, positions)). */
function ropeTables(S: number, rotary: number, theta: number, positions?: ArrayLike<number>): { cos: tf.Tensor; sin: tf.Tensor } {
  const key = `${tf.getBackend()},${S},${rotary},${theta}${positions ? `@${Array.from(positions).join(',')}` : ''}`;
  let t = tables.get(key);
  if (!t || t.cos.isDisposed) {
    const h = rotary / 2, c = new Float32Array(S * h), s = new Float32Array(S * h);
    for (let p = 0; p < S; p++) for (let i = 0; i < h; i++) { const a = (positions ? positions[p] : p) * Math.pow(theta, (-2 * i) / rotary); c[p * h + i] = Math.cos(a); s[p * h + i] = Math.sin(a); }
    t = tf.tidy(() => ({ cos: tf.keep(tf.tensor2d(c, [S, h])), sin: tf.keep(tf.tensor2d(s, [S, h])) }));
    tables.set(key, t);
  }
  return t;
}

/** Whether the fused RoPE kernel runs on the active backend (else rope.ts uses the GEMM formulation). */
export function hasFusedRope(): boolean { return hasKernel(ROPE); }

/** RoPE of x [B, S, n, d] over the last `rotary` dims of each head (inverse: the backward); row s of
 *  every sequence at position `positions[s]` (default s). */
export function ropeFused(x: tf.Tensor, theta: number, rotary: number, inverse = false, positions?: ArrayLike<number>): tf.Tensor {
  const [, S, , d] = x.shape as number[];
  if (x.rank !== 4 || rotary % 2 !== 0 || rotary > d) throw new Error(`ropeFused: x [B, S, n, d] and an even rotary ≤ d, got [${x.shape}], ${rotary}`);
  if (positions && positions.length !== S) throw new Error(`ropeFused: ${positions.length} positions for S = ${S}`);
  const { cos, sin } = ropeTables(S, rotary, theta, positions);
  return runFused(ROPE, { x, cos, sin }, { rotary, inverse })[0];
}
