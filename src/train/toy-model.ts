// A tiny stand-in model with the TrainableModel interface: one-hot embedding, tanh, linear head,
// hand-written backward. It trains in milliseconds, so trainer, checkpoint and report tests do not
// depend on the MoE model's speed. Its "router statistics" bucket tokens by id mod E, which gives
// the expert-load metrics and heatmaps something realistic to show.
import { tf } from '../backend/tf.ts';
import { ParamStore, type ForwardContext, type GradStore } from '../model/module.ts';
import type { LossParts, MoELayerHooks, TrainableModel } from './model.ts';

export class ToyModel implements TrainableModel {
  readonly params = new ParamStore();
  /** Calls of the end-of-global-batch hooks (tests check they run once per optimizer step). */
  biasUpdates = 0;
  auxResets = 0;

  constructor(readonly vocabSize: number, readonly hidden: number, seed: number, readonly numExperts = 8, readonly numLayers = 2) {
    this.params.add('wte', tf.randomNormal([vocabSize, hidden], 0, 0.5, 'float32', seed), { decay: false });
    this.params.add('head', tf.randomNormal([hidden, vocabSize], 0, 0.02, 'float32', seed + 1), { decay: true });
  }

  private forward(tokens: Int32Array, targets: Int32Array) {
    const n = tokens.length;
    const x = tf.cast(tf.oneHot(tf.tensor1d(tokens, 'int32'), this.vocabSize), 'float32'); // [N, V]
    const a = tf.tanh(tf.matMul(x, this.params.get('wte')));                              // [N, d]
    const logits = tf.matMul(a, this.params.get('head'));                                 // [N, V]
    const y = tf.cast(tf.oneHot(tf.tensor1d(targets, 'int32'), this.vocabSize), 'float32');
    const logp = tf.logSoftmax(logits);
    const loss = tf.div(tf.neg(tf.sum(tf.mul(y, logp))), n);
    return { x, a, y, logp, loss };
  }

  forwardBackward(tokens: Int32Array, targets: Int32Array, _batch: number, _seqLen: number, ctx: ForwardContext, grads: GradStore): LossParts {
    const loss = tf.tidy(() => {
      const { x, a, y, logp, loss } = this.forward(tokens, targets);
      const dlogits = tf.mul(tf.sub(tf.exp(logp), y), ctx.lossScale / tokens.length);
      grads.add('head', tf.matMul(a, dlogits, true, false));
      const da = tf.matMul(dlogits, this.params.get('head'), false, true);
      const dh = tf.mul(da, tf.sub(1, tf.square(a)));
      grads.add('wte', tf.matMul(x, dh, true, false));
      return loss;
    });
    if (ctx.recordStats) {
      for (let l = 0; l < this.numLayers; l++) {
        const tpe = new Float64Array(this.numExperts);
        for (const t of tokens) tpe[(t + l) % this.numExperts]++;
        ctx.routerStats.push({ layer: l, tokensPerExpert: tpe, numTokens: tokens.length, droppedAssignments: 0, auxLosses: { switch: 0 } });
      }
    }
    return { loss, lmLoss: loss.dataSync()[0], auxLoss: 0, zLoss: 0 };
  }

  forwardLoss(tokens: Int32Array, targets: Int32Array): LossParts {
    const loss = tf.tidy(() => this.forward(tokens, targets).loss);
    return { loss, auxLoss: 0, zLoss: 0 };
  }

  logits(tokens: Int32Array, batch: number, seqLen: number): tf.Tensor {
    return tf.tidy(() => {
      const x = tf.cast(tf.oneHot(tf.tensor1d(tokens, 'int32'), this.vocabSize), 'float32');
      const l = tf.matMul(tf.tanh(tf.matMul(x, this.params.get('wte'))), this.params.get('head'));
      return tf.reshape(l, [batch, seqLen, this.vocabSize]);
    });
  }

  moeLayers(): MoELayerHooks[] {
    return [{ updateExpertBias: () => { this.biasUpdates++; }, resetGlobalAux: () => { this.auxResets++; } }];
  }

  dispose(): void { this.params.dispose(); }
}
