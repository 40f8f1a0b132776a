// Token cross-entropy, mean over tokens whose target is not −1 (the ignore index).
//   loss = −(1/N) Σ_{t valid} log softmax(logits[t])[target[t]],  N = #valid (at least 1),
//   summed on the host from the saved probs (one softmax kernel, one read)
//   dlogits = dloss · (softmax − onehot(target)) · valid / N
// Saved: ce.probs [T, V]; host: ce.targets, ce.count.
import { tf } from '../backend/tf.ts';
import type { SavedActivations } from './saved.ts';

export class CrossEntropy {
  readonly savedNames: readonly string[];
  constructor(readonly tag = 'ce') { this.savedNames = [`${tag}.probs`]; }

  /** Scalar loss (a constant tensor: the gradient is `backward`'s, not autograd's). */
  forward(logits: tf.Tensor, targets: Int32Array, rec: SavedActivations | null): tf.Scalar {
    const [T, V] = logits.shape;
    if (targets.length !== T) throw new Error(`cross-entropy: ${targets.length} targets for ${T} rows`);
    const { count } = targetIndex(targets, V);
    // The wasm Softmax kernel is native (≈0.7 ms for [1024, 256]); logSoftmax and Exp are ~4× slower.
    const probs = tf.softmax(logits);                                    // [T, V]
    const p = probs.dataSync();
    let sum = 0, lg: Float32Array | null = null;
    for (let t = 0; t < T; t++) {
      const y = targets[t];
      if (y < 0) continue;
      const pt = p[t * V + y];
      if (pt > 1e-30) { sum -= Math.log(pt); continue; }
      // underflow: exact lse − z from the logits row
      lg ??= logits.dataSync() as Float32Array;
      let m = -Infinity, s = 0;
      for (let v = 0; v < V; v++) m = Math.max(m, lg[t * V + v]);
      for (let v = 0; v < V; v++) s += Math.exp(lg[t * V + v] - m);
      sum += m + Math.log(s) - lg[t * V + y];
    }
    if (rec) {
      rec.save(`${this.tag}.probs`, probs);
      rec.setHost(`${this.tag}.targets`, targets);
      rec.setHost(`${this.tag}.count`, count);
    } else probs.dispose();
    return tf.scalar(sum / count);
  }

  /** dlogits [T, V] for loss scaled by `dloss`. */
  backward(dloss: number, rec: SavedActivations): tf.Tensor {
    const probs = rec.get(`${this.tag}.probs`);
    const [T, V] = probs.shape;
    const targets = rec.getHost<Int32Array>(`${this.tag}.targets`), count = rec.getHost<number>(`${this.tag}.count`);
    const { mask, onehot } = targetIndex(targets, V);
    const scale = tf.mul(tf.tensor2d(mask, [T, 1]), dloss / count);
    return tf.mul(tf.sub(probs, tf.tensor2d(onehot, [T, V])), scale);
  }
}

function targetIndex(targets: Int32Array, V: number) {
  const T = targets.length, onehot = new Float32Array(T * V), mask = new Float32Array(T);
  let count = 0;
  for (let t = 0; t < T; t++) {
    const y = targets[t];
    if (y < -1 || y >= V) throw new Error(`target ${y} at ${t} outside [0, ${V}) and not the ignore index -1`);
    if (y >= 0) { onehot[t * V + y] = 1; mask[t] = 1; count++; }
  }
  return { onehot, mask, count: Math.max(count, 1) };
}
