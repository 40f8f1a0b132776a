// Context-parallel multi-head latent attention (DeepSeek-V3 / Pangu Ultra MoE) over load-balanced chunks
// (chunking.ts), executed on every rank in lockstep like the GQA path (cp-attention.ts). Each CP rank
// holds L = S/CP positions of every sequence and runs its own MLAttention's projections on them
// (MLAttention.project, RoPE at the chunks' global positions), so there is no second MLA
// implementation. What travels around the CP ring are the tensors the single-device MLA keeps as its
// keys/values: the up-projection kvUp [T, a·(dn+dv)] (k_nope and v of every head) and the decoupled
// rope key kRope [T, dr] after RoPE, which is shared by all heads and so is sent once per token, not
// per head. Forward: ring all-gather of both (cp − 1 steps of one rank's block); the core runs the
// local queries against all S positions, masked by global position. Backward: the core's dkvUp and
// dkRope partials go back around the ring (reduce-scatter) to the rank owning the positions, which
// finishes through MLAttention.projectBackward (wkvB, kv_a norm, wkvA, the query path).
//   bytes per rank, per layer and micro-batch, each way: (c−1)·(s/c)·b·(a·(dn+dv) + dr)·4
// (a = the rank's heads, numHeads/tp under TP; every TP rank sends its own copy of kRope).
// Why post-projection and not the latent: gathering the normed latent + rope key would move
// (rkv + dr) floats per token instead, but every rank would redo the up-projection of all S positions
// (cp× its FLOPs) and its dW; the GQA path and Megatron's CP core both exchange post-projection K/V.
import { tf } from '../../backend/tf.ts';
import type { Cluster } from '../../device/cluster.ts';
import type { ProcessGroup } from '../../device/groups.ts';
import type { ForwardContext, GradStore, Module, ParamStore } from '../../model/module.ts';
import type { SavedActivations } from '../../model/saved.ts';
import { MLAttention } from '../../model/attention-mla.ts';
import { attentionCoreBackwardKT, attentionCoreForwardKT, fromHeads, toHeads } from '../../model/attention-core.ts';
import { linear, linearBackward, rows } from '../../model/linear.ts';
import type { StepClock } from '../clock.ts';
import { cpPositions, positionMask } from './chunking.ts';
import { cpAllGather, cpReduceScatter, type ContextParallelAttention } from './ring.ts';

function asMLA(m: Module): MLAttention {
  if (!(m instanceof MLAttention)) throw new Error('CPMLAttention: the layer\'s attention module is not MLA');
  return m;
}

/** [c·b·L, n] (CP-rank-major, as gathered) ↔ [b·S, n] (sequence-major, S = c·L in CP-rank order). */
function fromRing(x: tf.Tensor, c: number, b: number, L: number): tf.Tensor2D {
  const n = x.shape[x.rank - 1];
  return (b === 1 ? tf.reshape(x, [L * c, n]) : tf.reshape(tf.transpose(tf.reshape(x, [c, b, L, n]), [1, 0, 2, 3]), [b * c * L, n])) as tf.Tensor2D;
}
function toRing(x: tf.Tensor, c: number, b: number, L: number): tf.Tensor2D {
  const n = x.shape[x.rank - 1];
  return (b === 1 ? tf.reshape(x, [c * L, n]) : tf.reshape(tf.transpose(tf.reshape(x, [b, c, L, n]), [1, 0, 2, 3]), [c * b * L, n])) as tf.Tensor2D;
}

export class CPMLAttention implements ContextParallelAttention {
  constructor(readonly cluster: Cluster, readonly cpGroups: ProcessGroup[], readonly clock: StepClock, readonly seqLen: number) {}

  private cpRank(r: number): number { return this.cpGroups.find((g) => g.ranks.includes(r))!.ranks.indexOf(r); }
  private get cp(): number { return this.cpGroups[0].ranks.length; }
  private positions(r: number): Int32Array { return cpPositions(this.seqLen, this.cp, this.cpRank(r)); }

  forward(prefix: string, params: ParamStore[], xs: tf.Tensor[], recs: SavedActivations[], ctxs: ForwardContext[], modules: Module[]): tf.Tensor[] {
    const [b, L, H] = xs[0].shape, S = this.seqLen, cp = this.cp, mla = modules.map(asMLA);
    // local projections at global positions; the local kvUp/kRope leave the record once gathered
    const local = xs.map((x, r) => tf.tidy(() => {
      const { kvUp, kRope } = mla[r].project(x, recs[r], ctxs[r], this.positions(r));
      return { kvUp, kRope: tf.reshape(kRope, [b * L, mla[r].dr]) };                             // [b·L, a·(dn+dv)], [b·L, dr]
    }));
    const KV = cpAllGather(this.cluster, this.cpGroups, this.clock, local.map((x) => x.kvUp), 'cp.kv');   // [c·b·L, a·(dn+dv)]
    const KR = cpAllGather(this.cluster, this.cpGroups, this.clock, local.map((x) => x.kRope), 'cp.kv');  // [c·b·L, dr]
    tf.dispose(local.map((x) => x.kRope));
    recs.forEach((rec) => rec.release('mla.kvUp', 'mla.kRope'));
    const keyPos = Int32Array.from(Array.from({ length: cp }, (_, s) => Array.from(cpPositions(S, cp, s))).flat());
    const ys = xs.map((_, r) => {
      const m = mla[r], rec = recs[r];
      const y = tf.tidy(() => {
        const kvUp = rec.save('cpmla.kvUp', fromRing(KV[r], cp, b, L));                               // [b·S, a·(dn+dv)]
        const kRope = rec.save('cpmla.kRope', tf.reshape(fromRing(KR[r], cp, b, L), [b, S, 1, m.dr]));
        const { kT, vT } = m.keysValues(kvUp, kRope, b, S);                                            // [b·a, dn+dr, S], [b·a, dv, S]
        const mask = tf.tensor2d(positionMask(this.positions(r), keyPos), [L, S]);
        const c = attentionCoreForwardKT(rec.get('mla.q'), kT, vT, m.scale, rec, 'mla', null, mask);  // [b·a, L, dv]
        const ctx2 = rec.save('mla.ctx', tf.reshape(fromHeads(c, b), [b * L, m.a * m.dv]));
        return tf.reshape(linear(ctx2, params[r].get(`${prefix}.wo`)), [b, L, H]);
      });
      const dk = m.dn + m.dr;
      this.clock.compute(r, `${prefix} cp attention fwd`, { flops: 2 * b * L * attnParams(params[r], prefix) + 2 * b * m.a * L * S * (dk + m.dv) });
      return y;
    });
    tf.dispose([...KV, ...KR]);
    return ys;
  }

  backward(prefix: string, params: ParamStore[], dys: tf.Tensor[], recs: SavedActivations[], grads: GradStore[], ctxs: ForwardContext[], modules: Module[]): tf.Tensor[] {
    const [b, L, H] = dys[0].shape, S = this.seqLen, cp = this.cp, mla = modules.map(asMLA);
    // the core on the gathered keys: dq for the local queries, dkvUp/dkRope partials for all S positions
    const parts = dys.map((dy, r) => tf.tidy(() => {
      const m = mla[r], rec = recs[r];
      const dctx2 = linearBackward(rows(dy), rec.get('mla.ctx'), params[r].get(`${prefix}.wo`), grads[r], `${prefix}.wo`);
      rec.release('mla.ctx');
      const { kT, vT } = m.keysValues(rec.get('cpmla.kvUp'), rec.get('cpmla.kRope'), b, S);
      const g = attentionCoreBackwardKT(toHeads(tf.reshape(dctx2, [b, L, m.a, m.dv])), rec.get('mla.q'), kT, vT, rec.get('mla.probs'), m.scale);
      rec.release('mla.probs', 'mla.q', 'cpmla.kvUp', 'cpmla.kRope');
      const { dkvUp, dkRope } = m.keysValuesBackward(g.dkT, g.dvT, b, S);                            // [b·S, a·(dn+dv)], [b, S, dr]
      return { dq: g.dq, dkvUp: toRing(dkvUp, cp, b, L), dkRope: toRing(dkRope, cp, b, L) };          // CP-rank-major for the reduce-scatter
    }));
    const dKV = cpReduceScatter(this.cluster, this.cpGroups, this.clock, parts.map((p) => p.dkvUp), 'cp.dkv');   // [b·L, a·(dn+dv)]
    const dKR = cpReduceScatter(this.cluster, this.cpGroups, this.clock, parts.map((p) => p.dkRope), 'cp.dkv');  // [b·L, dr]
    const dxs = dys.map((_, r) => {
      const m = mla[r];
      const dx = tf.tidy(() => tf.reshape(m.projectBackward(parts[r].dq, dKV[r] as tf.Tensor2D, tf.reshape(dKR[r], [b, L, m.dr]), recs[r], grads[r], ctxs[r], this.positions(r)), [b, L, H]));
      this.clock.compute(r, `${prefix} cp attention bwd`, { flops: 4 * b * L * attnParams(params[r], prefix) + 4 * b * m.a * L * S * (m.dn + m.dr + m.dv) });
      return dx;
    });
    tf.dispose([...parts.flatMap((p) => [p.dq, p.dkvUp, p.dkRope]), ...dKV, ...dKR]);
    return dxs;
  }
}

/** Attention parameters of this rank under `prefix` (the coarse projection FLOPs). */
function attnParams(params: ParamStore, prefix: string): number {
  let n = 0;
  for (const [name, v] of params.vars) if (name.startsWith(`${prefix}.`)) n += v.size;
  return n;
}
