// Rotary position embedding, rotate-half (GPT-NeoX / Llama / Megatron default) convention:
//   y = x·cos + rotateHalf(x)·sin, rotateHalf([x1, x2]) = [−x2, x1],
// with frequencies θ_i = theta^(−2i/r) for i < r/2 (r = rotary dims), both halves sharing θ_i.
// Positions are the index s inside each sequence (token t = b·S + s), or `positions[s]` when given
// (context parallelism: a rank's chunks sit at global positions, parallel/cp/chunking.ts). Inputs
// are [B, S, n, d] (n heads); the rotary part is the last r dims of each head (MLA's q = [nope | rope]: the
// nope dims get cos = 1, sin = 0, so no split/concat is needed). rotateHalf is a [d, d] signed
// permutation matrix R applied as one small GEMM: rotateHalf(x) = x·R.
// Backward: dx = dy·cos + (dy·sin)·Rᵀ.
// (HF DeepSeek-V3 permutes the rope dims to interleaved pairs before rotate-half; that is the
// same function up to a fixed permutation of the rope columns of the weights.)
import { tf } from '../backend/tf.ts';
import { hasFusedRope, ropeFused } from '../backend/fused-rope.ts';

interface Tables { cos: Float32Array; sin: Float32Array; rot: Float32Array }
const cache = new Map<string, Tables>();

function tables(seqLen: number, dim: number, rotary: number, theta: number, positions?: ArrayLike<number>): Tables {
  if (positions && positions.length !== seqLen) throw new Error(`rope: ${positions.length} positions for S = ${seqLen}`);
  const key = `${seqLen},${dim},${rotary},${theta}${positions ? `@${Array.from(positions).join(',')}` : ''}`;
  let t = cache.get(key);
  if (t) return t;
  const half = rotary / 2, off = dim - rotary;
  const cos = new Float32Array(seqLen * dim).fill(1), sin = new Float32Array(seqLen * dim);
  for (let p = 0; p < seqLen; p++) {
    for (let i = 0; i < half; i++) {
      const a = (positions ? positions[p] : p) * Math.pow(theta, (-2 * i) / rotary);
      cos[p * dim + off + i] = cos[p * dim + off + i + half] = Math.cos(a);
      sin[p * dim + off + i] = sin[p * dim + off + i + half] = Math.sin(a);
    }
  }
  const rot = new Float32Array(dim * dim); // y[j] = Σ_i x[i]·R[i, j]
  for (let j = 0; j < half; j++) {
    rot[(off + j + half) * dim + off + j] = -1; // y[j] = −x[j + h]
    rot[(off + j) * dim + off + j + half] = 1;  // y[j + h] = x[j]
  }
  t = { cos, sin, rot };
  cache.set(key, t);
  return t;
}

function consts(x: tf.Tensor, theta: number, rotary?: number, positions?: ArrayLike<number>) {
  const [, S, , d] = x.shape as number[];
  const t = tables(S, d, rotary ?? d, theta, positions);
  return { cos: tf.tensor4d(t.cos, [1, S, 1, d]), sin: tf.tensor4d(t.sin, [1, S, 1, d]), rot: tf.tensor2d(t.rot, [d, d]), d };
}

/** rotateHalf over the last `rotary` dims (default all) of x [..., d]. */
export function rotateHalf(x: tf.Tensor, rotary?: number): tf.Tensor {
  const d = x.shape[x.shape.length - 1];
  const { rot } = tables(1, d, rotary ?? d, 1);
  return tf.reshape(tf.matMul(tf.reshape(x, [-1, d]), tf.tensor2d(rot, [d, d])), x.shape);
}

/** x [B, S, n, d] → x with RoPE applied to its last `rotary` dims (default: all d), row s at position
 *  `positions[s]` (default s). One fused kernel where available (src/backend/fused-rope.ts, bit-equal
 *  to the formulation below). */
export function applyRope(x: tf.Tensor, theta: number, rotary?: number, positions?: ArrayLike<number>): tf.Tensor {
  if (hasFusedRope()) return ropeFused(x, theta, rotary ?? (x.shape[3] as number), false, positions);
  const { cos, sin, rot, d } = consts(x, theta, rotary, positions);
  const xr = tf.reshape(tf.matMul(tf.reshape(x, [-1, d]), rot), x.shape);
  return tf.add(tf.mul(x, cos), tf.mul(xr, sin));
}

/** dx from dy for applyRope. */
export function applyRopeBackward(dy: tf.Tensor, theta: number, rotary?: number, positions?: ArrayLike<number>): tf.Tensor {
  if (hasFusedRope()) return ropeFused(dy, theta, rotary ?? (dy.shape[3] as number), true, positions);
  const { cos, sin, rot, d } = consts(dy, theta, rotary, positions);
  const ds = tf.reshape(tf.mul(dy, sin), [-1, d]);
  return tf.add(tf.mul(dy, cos), tf.reshape(tf.matMul(ds, rot, false, true), dy.shape));
}
