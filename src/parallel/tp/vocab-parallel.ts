// Vocab-parallel embedding and LM head + cross-entropy (Megatron VocabParallelEmbedding and
// vocab_parallel_cross_entropy). TP rank i holds vocab rows/columns [i·V/tp, (i+1)·V/tp).
//   embedding:  partial[t] = W_i[id − v0] if id ∈ shard else 0;  h = all-reduce_TP(partial)
//               backward: dW_i = scatter-add of dh rows whose id is in the shard (no comm)
//   head + CE:  x = f(finalNorm(h)); z_i = x·W_i [T, V/tp]
//               m = all-reduce-max(max_v z_i), s = all-reduce-sum(Σ_v exp(z_i − m)),
//               zt = all-reduce-sum(z_i[t, y_t − v0] if y_t ∈ shard)
//               loss = mean_valid(log s + m − zt)
//               backward: dz_i = (exp(z_i − m)/s − onehot_i) · valid · dloss / N;  dx = f⁻¹(dz_i·W_iᵀ)
// Executed per world rank in lockstep (arrays indexed by rank), like every parallel executor here.
import { tf } from '../../backend/tf.ts';
import type { GradStore, ParamStore } from '../../model/module.ts';
import type { SavedActivations } from '../../model/saved.ts';
import type { TPMappings } from './mappings.ts';

export class VocabParallelEmbedding {
  constructor(readonly maps: TPMappings, readonly params: ParamStore[], readonly name: string, readonly vocab: number) {}

  private range(rank: number): [number, number] {
    const per = this.vocab / this.maps.size, i = this.maps.tpRank(rank);
    return [i * per, (i + 1) * per];
  }

  /** ids[r] [T] → h[r] [T, H] (full rows on every TP rank); with `sequenceParallel` the partial rows are
   *  reduce-scattered instead: h[r] = TP rank i's rows [i·T/tp, (i+1)·T/tp). */
  forward(ids: Int32Array[], recs: SavedActivations[], sequenceParallel = false): tf.Tensor[] {
    const partial = ids.map((id, r) => {
      recs[r].setHost('vpe.ids', id);
      const [v0, v1] = this.range(r), w = this.params[r].get(this.name), H = w.shape[1] as number;
      const table = w.dataSync() as Float32Array, out = new Float32Array(id.length * H);
      for (let t = 0; t < id.length; t++) if (id[t] >= v0 && id[t] < v1) out.set(table.subarray((id[t] - v0) * H, (id[t] - v0 + 1) * H), t * H);
      return tf.tensor2d(out, [id.length, H]);
    });
    const h = sequenceParallel ? this.maps.reduceScatterToSP(partial, 'embedding') : this.maps.allReduceTP(partial, 'tp.embedding');
    tf.dispose(partial);
    return h;
  }

  backward(dhIn: tf.Tensor[], recs: SavedActivations[], grads: GradStore[], sequenceParallel = false): void {
    const dh = sequenceParallel ? this.maps.reduceScatterToSPBackward(dhIn, 'embedding') : dhIn;
    dh.forEach((d, r) => tf.tidy(() => {
      const ids = recs[r].getHost<Int32Array>('vpe.ids'), [v0, v1] = this.range(r), w = this.params[r].get(this.name);
      const keep: number[] = [], local: number[] = [];
      ids.forEach((id, t) => { if (id >= v0 && id < v1) { keep.push(t); local.push(id - v0); } });
      const H = w.shape[1] as number;
      const g = keep.length === 0 ? tf.zerosLike(w)
        : tf.scatterND(tf.tensor2d(local, [local.length, 1], 'int32'), tf.gather(tf.reshape(d, [-1, H]), tf.tensor1d(keep, 'int32')), w.shape);
      grads[r].add(this.name, g);
    }));
    if (sequenceParallel) tf.dispose(dh);
  }
}

export class VocabParallelHead {
  constructor(readonly maps: TPMappings, readonly params: ParamStore[], readonly name: string, readonly vocab: number) {}

  /** x[r] [T, H] (normed hidden, replicated over TP) → CE per rank (identical within a TP group). */
  forward(x: tf.Tensor[], targets: Int32Array[], recs: SavedActivations[]): number[] {
    const W = x.length, per = this.vocab / this.maps.size;
    const z = x.map((xi, r) => tf.matMul(xi as tf.Tensor2D, this.params[r].get(this.name) as tf.Tensor2D)); // [T, V/tp]
    const mLocal = z.map((zi) => tf.max(zi, 1, true));
    const m = this.maps.allReduceTP(mLocal, 'tp.ce.max', 'max');                                            // [T, 1]
    const e = z.map((zi, r) => tf.tidy(() => tf.exp(tf.sub(zi, m[r]))));
    const sLocal = e.map((ei) => tf.sum(ei, 1, true));
    const s = this.maps.allReduceTP(sLocal, 'tp.ce.sumexp');                                                // [T, 1]
    const ztLocal = z.map((zi, r) => {
      const v0 = this.maps.tpRank(r) * per, zh = zi.dataSync(), T = targets[r].length, out = new Float32Array(T);
      targets[r].forEach((y, t) => { if (y >= v0 && y < v0 + per) out[t] = zh[t * per + y - v0]; });
      return tf.tensor2d(out, [T, 1]);
    });
    const zt = this.maps.allReduceTP(ztLocal, 'tp.ce.target');
    const ce = new Array<number>(W);
    for (let r = 0; r < W; r++) {
      const sh = s[r].dataSync(), mh = m[r].dataSync(), th = zt[r].dataSync();
      let sum = 0, count = 0;
      targets[r].forEach((y, t) => { if (y >= 0) { sum += Math.log(sh[t]) + mh[t] - th[t]; count++; } });
      ce[r] = sum / Math.max(count, 1);
      recs[r].save('vph.probs', tf.div(e[r], s[r]));                                                      // [T, V/tp]
      recs[r].save('vph.x', tf.clone(x[r]));
      recs[r].setHost('vph.targets', targets[r]);
      recs[r].setHost('vph.count', Math.max(count, 1));
    }
    tf.dispose([...z, ...mLocal, ...m, ...e, ...sLocal, ...s, ...ztLocal, ...zt]);
    return ce;
  }

  /** dloss per rank → dx[r] [T, H] (after the f all-reduce; with `sequenceParallel` reduce-scattered
   *  to the rank's rows [i·T/tp, (i+1)·T/tp) instead, the backward of gatherToTP); adds dW_i. */
  backward(dloss: number[], recs: SavedActivations[], grads: GradStore[], sequenceParallel = false): tf.Tensor[] {
    const per = this.vocab / this.maps.size;
    const partial = recs.map((rec, r) => tf.tidy(() => {
      const probs = rec.get('vph.probs'), x = rec.get('vph.x'), targets = rec.getHost<Int32Array>('vph.targets'), count = rec.getHost<number>('vph.count');
      const T = targets.length, v0 = this.maps.tpRank(r) * per;
      const onehot = new Float32Array(T * per), mask = new Float32Array(T);
      targets.forEach((y, t) => { if (y >= 0) { mask[t] = 1; if (y >= v0 && y < v0 + per) onehot[t * per + y - v0] = 1; } });
      const dz = tf.mul(tf.sub(probs, tf.tensor2d(onehot, [T, per])), tf.mul(tf.tensor2d(mask, [T, 1]), dloss[r] / count)); // [T, V/tp]
      const w = this.params[r].get(this.name);
      grads[r].add(this.name, tf.matMul(x as tf.Tensor2D, dz as tf.Tensor2D, true, false));                  // [H, V/tp]
      return tf.matMul(dz as tf.Tensor2D, w as tf.Tensor2D, false, true);                                     // [T, H] partial
    }));
    const dx = sequenceParallel ? this.maps.gatherToTPBackward(partial, 'head') : this.maps.copyToTPBackward(partial, 'head');
    tf.dispose(partial);
    return dx;
  }
}
