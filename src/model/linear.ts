// Bias-free linear layers as 2-D matMuls (tfjs-notes P8): weights are stored [in, out] so the
// forward is an untransposed [N, in]×[in, out] GEMM (the fast XNNPACK path on wasm).
import { tf } from '../backend/tf.ts';
import type { GradStore } from './module.ts';

/** y = x·W, x [N, in], W [in, out] → [N, out]. */
export function linear(x: tf.Tensor, w: tf.Tensor): tf.Tensor2D {
  return tf.matMul(x as tf.Tensor2D, w as tf.Tensor2D);
}

/** dx = dy·Wᵀ; grads[name] += xᵀ·dy. */
export function linearBackward(dy: tf.Tensor, x: tf.Tensor, w: tf.Tensor, grads: GradStore, name: string): tf.Tensor2D {
  grads.add(name, tf.matMul(x as tf.Tensor2D, dy as tf.Tensor2D, true, false)); // [in, out]
  return tf.matMul(dy as tf.Tensor2D, w as tf.Tensor2D, false, true);          // [N, in]
}

/** Flatten all leading axes: [..., D] → [N, D]. */
export function rows(x: tf.Tensor): tf.Tensor2D {
  return tf.reshape(x, [-1, x.shape[x.shape.length - 1]]);
}
