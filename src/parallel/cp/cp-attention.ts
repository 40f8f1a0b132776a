// Context-parallel causal attention (GQA) over load-balanced chunks (chunking.ts), executed on every
// rank in lockstep. Each CP rank holds L = S/CP query positions of every sequence; the keys/values of
// all positions travel around the CP ring (cp − 1 steps, each moving one rank's local K/V block:
// a ring all-gather) and the gradients of K/V travel back (ring reduce-scatter), which is the
// communication of ring attention (perf-model §2.6: (c−1) P2P steps of 2·(s/c)·b·n_kv·d_head bytes).
// The softmax is taken over the gathered blocks at once (same numbers as the blockwise online-softmax
// merge of ring attention, not its memory saving). Queries and keys are masked by global position.
//   q = rope(x·wq, pos) [b·a, L, d];  K, V [b·g, S, d] (gathered);  out = softmax(q·Kᵀ·scale + mask)·V·wo
// With TP the heads (and wq/wk/wv columns, wo rows) are the rank's shard; the caller all-reduces the
// output (g) and the input gradient (f) over TP.
import { tf } from '../../backend/tf.ts';
import type { Cluster } from '../../device/cluster.ts';
import type { ProcessGroup } from '../../device/groups.ts';
import type { GradStore, ParamStore } from '../../model/module.ts';
import type { SavedActivations } from '../../model/saved.ts';
import { rotateHalf } from '../../model/rope.ts';
import { fromHeads, toHeads } from '../../model/attention-core.ts';
import type { StepClock } from '../clock.ts';
import { cpPositions, positionMask } from './chunking.ts';
import { cpAllGather, cpReduceScatter, type ContextParallelAttention } from './ring.ts';

/** cos/sin [1, L, 1, d] of rotate-half RoPE at the given positions (all d dims rotary). */
function ropeTables(pos: Int32Array, d: number, theta: number): { cos: tf.Tensor4D; sin: tf.Tensor4D } {
  const half = d / 2, L = pos.length, cos = new Float32Array(L * d), sin = new Float32Array(L * d);
  for (let p = 0; p < L; p++) for (let i = 0; i < half; i++) {
    const a = pos[p] * Math.pow(theta, (-2 * i) / d);
    cos[p * d + i] = cos[p * d + i + half] = Math.cos(a);
    sin[p * d + i] = sin[p * d + i + half] = Math.sin(a);
  }
  return { cos: tf.tensor4d(cos, [1, L, 1, d]), sin: tf.tensor4d(sin, [1, L, 1, d]) };
}
const rope = (x: tf.Tensor, t: { cos: tf.Tensor; sin: tf.Tensor }) => tf.add(tf.mul(x, t.cos), tf.mul(rotateHalf(x), t.sin));
// rotate-half is antisymmetric (Rᵀ = −R): dx = dy·cos − rotateHalf(dy·sin)
const ropeBackward = (dy: tf.Tensor, t: { cos: tf.Tensor; sin: tf.Tensor }) => tf.sub(tf.mul(dy, t.cos), rotateHalf(tf.mul(dy, t.sin)));

/** [b·g, S, d] → [b·a, S, d] (each kv head serves a/g query heads). */
function expand(x: tf.Tensor, b: number, g: number, a: number): tf.Tensor3D {
  const [, S, d] = x.shape, r = a / g;
  return (r === 1 ? x : tf.reshape(tf.tile(tf.reshape(x, [b, g, 1, S * d]), [1, 1, r, 1]), [b * a, S, d])) as tf.Tensor3D;
}
function reduceHeads(x: tf.Tensor, b: number, g: number, a: number): tf.Tensor3D {
  const [, S, d] = x.shape, r = a / g;
  return (r === 1 ? x : tf.reshape(tf.sum(tf.reshape(x, [b, g, r, S, d]), 2), [b * g, S, d])) as tf.Tensor3D;
}

export class CPAttention implements ContextParallelAttention {
  constructor(readonly cluster: Cluster, readonly cpGroups: ProcessGroup[], readonly clock: StepClock,
    readonly headDim: number, readonly theta: number, readonly seqLen: number) {}

  private cpRank(r: number): number { return this.cpGroups.find((g) => g.ranks.includes(r))!.ranks.indexOf(r); }
  private get cp(): number { return this.cpGroups[0].ranks.length; }

  /** xs[r] [b, L, H] (normed) → partial outputs [b, L, H] (sum over TP = the attention output). */
  forward(prefix: string, params: ParamStore[], xs: tf.Tensor[], recs: SavedActivations[]): tf.Tensor[] {
    const d = this.headDim, [b, L, H] = xs[0].shape, S = this.seqLen, cp = this.cp;
    const w = (r: number, n: string) => params[r].get(`${prefix}.${n}`) as tf.Tensor2D;
    // local projections; K/V laid out [L, b, g, d] so the ring all-gather concatenates positions on axis 0
    const local = xs.map((x, r) => tf.tidy(() => {
      const pos = cpPositions(S, cp, this.cpRank(r)), t = ropeTables(pos, d, this.theta);
      const x2 = recs[r].save('cpattn.x', tf.reshape(x, [b * L, H]) as tf.Tensor2D);
      const a = w(r, 'wq').shape[1] / d, g = w(r, 'wk').shape[1] / d;
      const q = recs[r].save('cpattn.q', toHeads(rope(tf.reshape(tf.matMul(x2, w(r, 'wq')), [b, L, a, d]), t)));   // [b·a, L, d]
      const k = tf.transpose(rope(tf.reshape(tf.matMul(x2, w(r, 'wk')), [b, L, g, d]), t), [1, 0, 2, 3]);          // [L, b, g, d]
      const v = tf.transpose(tf.reshape(tf.matMul(x2, w(r, 'wv')), [b, L, g, d]), [1, 0, 2, 3]);
      return { k, v };
    }));
    const K = this.gather(local.map((x) => x.k), 'cp.kv'), V = this.gather(local.map((x) => x.v), 'cp.kv');
    tf.dispose(local.flatMap((x) => [x.k, x.v]));
    const keyPos = Int32Array.from(Array.from({ length: cp }, (_, s) => Array.from(cpPositions(S, cp, s))).flat());
    const ys = xs.map((_, r) => {
      const y = tf.tidy(() => {
        const a = w(r, 'wq').shape[1] / d, g = w(r, 'wk').shape[1] / d;
        const Kh = recs[r].save('cpattn.K', toHeads(tf.transpose(K[r], [1, 0, 2, 3])));                        // [b·g, S, d]
        const Vh = recs[r].save('cpattn.V', toHeads(tf.transpose(V[r], [1, 0, 2, 3])));
        const mask = tf.tensor2d(positionMask(cpPositions(S, cp, this.cpRank(r)), keyPos), [L, S]);
        const q = recs[r].get<tf.Tensor3D>('cpattn.q');
        const probs = recs[r].save('cpattn.probs', tf.softmax(tf.add(tf.matMul(tf.mul(q, 1 / Math.sqrt(d)), expand(Kh, b, g, a), false, true), mask)) as tf.Tensor3D); // [b·a, L, S]
        const ctx2 = recs[r].save('cpattn.ctx', tf.reshape(fromHeads(tf.matMul(probs, expand(Vh, b, g, a)), b), [b * L, a * d]));
        return tf.reshape(tf.matMul(ctx2, w(r, 'wo')), [b, L, H]);
      });
      this.clock.compute(r, `${prefix} cp attention fwd`, { flops: 2 * b * L * (4 * H * w(r, 'wq').shape[1]) + 4 * b * L * S * w(r, 'wq').shape[1] });
      return y;
    });
    tf.dispose([...K, ...V]);
    return ys;
  }

  /** dys[r] [b, L, H] → partial dx [b, L, H]; adds wq, wk, wv, wo gradients. */
  backward(prefix: string, params: ParamStore[], dys: tf.Tensor[], recs: SavedActivations[], grads: GradStore[]): tf.Tensor[] {
    const d = this.headDim, [b, L, H] = dys[0].shape, S = this.seqLen, cp = this.cp;
    const w = (r: number, n: string) => params[r].get(`${prefix}.${n}`) as tf.Tensor2D;
    const scale = 1 / Math.sqrt(d);
    const parts = dys.map((dy, r) => tf.tidy(() => {
      const a = w(r, 'wq').shape[1] / d, g = w(r, 'wk').shape[1] / d;
      const rec = recs[r], q = rec.get<tf.Tensor3D>('cpattn.q'), Kh = rec.get('cpattn.K'), Vh = rec.get('cpattn.V'), probs = rec.get<tf.Tensor3D>('cpattn.probs');
      const dy2 = tf.reshape(dy, [b * L, H]) as tf.Tensor2D;
      grads[r].add(`${prefix}.wo`, tf.matMul(rec.get<tf.Tensor2D>('cpattn.ctx'), dy2, true, false));
      const dctx = toHeads(tf.reshape(tf.matMul(dy2, w(r, 'wo'), false, true), [b, L, a, d]));                   // [b·a, L, d]
      const Ke = expand(Kh, b, g, a), Ve = expand(Vh, b, g, a);
      const dV = reduceHeads(tf.matMul(probs, dctx, true, false), b, g, a);                                      // [b·g, S, d]
      const dprobs = tf.matMul(dctx, Ve, false, true);
      const dscores = tf.mul(probs, tf.sub(dprobs, tf.sum(tf.mul(dprobs, probs), -1, true)));
      const dq = tf.mul(tf.matMul(dscores, Ke), scale);                                                            // [b·a, L, d]
      const dK = reduceHeads(tf.matMul(dscores, tf.mul(q, scale), true, false), b, g, a);                         // [b·g, S, d]
      // back to [S, b, g, d]: position-major for the ring reduce-scatter
      const toRing = (x: tf.Tensor) => tf.transpose(fromHeads(x, b), [1, 0, 2, 3]);
      return { dq, dK: toRing(dK), dV: toRing(dV) };
    }));
    const dK = this.reduceScatter(parts.map((p) => p.dK), 'cp.dkv'), dV = this.reduceScatter(parts.map((p) => p.dV), 'cp.dkv');
    const dxs = dys.map((_, r) => {
      const dx = tf.tidy(() => {
        const a = w(r, 'wq').shape[1] / d, g = w(r, 'wk').shape[1] / d;
        const t = ropeTables(cpPositions(S, cp, this.cpRank(r)), d, this.theta), x2 = recs[r].get<tf.Tensor2D>('cpattn.x');
        const dq2 = tf.reshape(ropeBackward(fromHeads(parts[r].dq, b), t), [b * L, a * d]) as tf.Tensor2D;
        const dk2 = tf.reshape(ropeBackward(tf.transpose(dK[r], [1, 0, 2, 3]), t), [b * L, g * d]) as tf.Tensor2D;
        const dv2 = tf.reshape(tf.transpose(dV[r], [1, 0, 2, 3]), [b * L, g * d]) as tf.Tensor2D;
        grads[r].add(`${prefix}.wq`, tf.matMul(x2, dq2, true, false));
        grads[r].add(`${prefix}.wk`, tf.matMul(x2, dk2, true, false));
        grads[r].add(`${prefix}.wv`, tf.matMul(x2, dv2, true, false));
        const dx2 = tf.addN([tf.matMul(dq2, w(r, 'wq'), false, true), tf.matMul(dk2, w(r, 'wk'), false, true), tf.matMul(dv2, w(r, 'wv'), false, true)]);
        return tf.reshape(dx2, [b, L, H]);
      });
      this.clock.compute(r, `${prefix} cp attention bwd`, { flops: 4 * b * L * (4 * H * w(r, 'wq').shape[1]) + 8 * b * L * S * w(r, 'wq').shape[1] });
      return dx;
    });
    tf.dispose([...parts.flatMap((p) => [p.dq, p.dK, p.dV]), ...dK, ...dV]);
    return dxs;
  }

  private gather(xs: tf.Tensor[], label: string): tf.Tensor[] { return cpAllGather(this.cluster, this.cpGroups, this.clock, xs, label); }
  private reduceScatter(xs: tf.Tensor[], label: string): tf.Tensor[] { return cpReduceScatter(this.cluster, this.cpGroups, this.clock, xs, label); }
}
