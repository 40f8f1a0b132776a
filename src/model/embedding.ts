// Token embedding: y[t] = W[ids[t]], W [V, H]. Backward is a scatter-add of dy rows into dW
// (scatterND sums duplicate indices on cpu and wasm, tfjs-notes §3), not tfjs's gather gradient
// (O(V·T·H) on cpu, missing on wasm: P4/P5).
// Saved: embedding.ids [T] int32. Output [T, H].
import { tf } from '../backend/tf.ts';
import type { ForwardContext, GradStore, Module, ParamStore } from './module.ts';
import type { SavedActivations } from './saved.ts';

export class Embedding implements Module {
  readonly savedNames = ['embedding.ids'] as const;
  constructor(readonly params: ParamStore, readonly weightName: string) {}

  /** ids [T] int32 → [T, H]. */
  forward(ids: tf.Tensor, rec: SavedActivations | null, _ctx?: ForwardContext): tf.Tensor {
    rec?.save('embedding.ids', tf.clone(ids));
    return hostGather(this.params.get(this.weightName), ids);
  }

  /** Adds dW; returns an empty tensor (token ids have no gradient). */
  backward(dy: tf.Tensor, rec: SavedActivations, grads: GradStore, _ctx?: ForwardContext): tf.Tensor {
    grads.add(this.weightName, embeddingGrad(rec.get('embedding.ids'), dy, this.params.get(this.weightName).shape));
    return tf.zeros([0]);
  }
}

/** Row gather done on the host: W.dataSync + row copies (≈7× faster than wasm GatherV2, which
 *  copies the whole table per call; tfjs-notes §3). Not differentiable by tfjs autograd. */
export function hostGather(w: tf.Tensor, ids: tf.Tensor): tf.Tensor2D {
  const [V, H] = w.shape, idx = ids.dataSync(), table = w.dataSync() as Float32Array;
  const out = new Float32Array(idx.length * H);
  for (let t = 0; t < idx.length; t++) {
    const r = idx[t];
    if (!(r >= 0 && r < V)) throw new Error(`token id ${r} at ${t} outside the vocabulary [0, ${V})`);
    out.set(table.subarray(r * H, r * H + H), t * H);
  }
  return tf.tensor2d(out, [idx.length, H]);
}

/** dW [V, H] = Σ_t onehot(ids[t]) ⊗ dy[t]. */
export function embeddingGrad(ids: tf.Tensor, dy: tf.Tensor, shape: number[]): tf.Tensor {
  return tf.scatterND(tf.reshape(ids, [-1, 1]), tf.reshape(dy, [-1, shape[1]]), shape);
}
