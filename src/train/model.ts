// What the trainer needs from a model (MoEGPT in src/model/gpt.ts satisfies it), how to build
// one, and its FLOPs per token for local MFU.
import { tf } from '../backend/tf.ts';
import type { ModelConfig } from '../model/config.ts';
import type { ForwardContext, GradStore, ParamStore } from '../model/module.ts';
import { MoEGPT } from '../model/gpt.ts';
import { modelFlops } from '../model/flops.ts';

/** Loss parts of one forward; numbers (or scalar tensors, which `lossNumbers` reads and disposes). */
export interface LossParts {
  loss: number | tf.Tensor;
  lmLoss?: number | tf.Tensor;
  mtpLoss?: number | tf.Tensor;
  auxLoss?: number | tf.Tensor;
  zLoss?: number | tf.Tensor;
}

export interface LossNumbers { loss: number; lmLoss: number; mtpLoss: number; auxLoss: number; zLoss: number }

export interface MoELayerHooks { updateExpertBias(): void; resetGlobalAux(): void }

export interface TrainableModel {
  params: ParamStore;
  /** Forward and hand-written backward of one micro-batch; parameter gradients (already scaled
   *  by ctx.lossScale) are added to `grads`, router statistics appended to ctx.routerStats. */
  forwardBackward(tokens: Int32Array, targets: Int32Array, batch: number, seqLen: number, ctx: ForwardContext, grads: GradStore): LossParts;
  /** Evaluation forward (no gradients, no statistics). */
  forwardLoss(tokens: Int32Array, targets: Int32Array, batch: number, seqLen: number): LossParts;
  /** Logits [batch·seqLen, vocab] (or [batch, seqLen, vocab]); the caller disposes them. */
  logits(tokens: Int32Array, batch: number, seqLen: number): tf.Tensor;
  moeLayers(): MoELayerHooks[];
  /** Non-trainable state that must survive a checkpoint (e.g. expert biases), by name. Optional. */
  buffers?(): Map<string, tf.Variable>;
  dispose(): void;
}

function num(x: number | tf.Tensor | undefined): number {
  if (x === undefined) return 0;
  if (typeof x === 'number') return x;
  const v = x.dataSync()[0];
  x.dispose();
  return v;
}

/** Host numbers of the loss parts; a missing lmLoss is the loss itself. Tensors are disposed. */
export function lossNumbers(p: LossParts): LossNumbers {
  const same = p.lmLoss === undefined || p.lmLoss === p.loss;
  const loss = num(p.loss);
  return { loss, lmLoss: same ? loss : num(p.lmLoss), mtpLoss: num(p.mtpLoss), auxLoss: num(p.auxLoss), zLoss: num(p.zLoss) };
}

/** The MoE model of src/model/gpt.ts. */
export function createModel(cfg: ModelConfig, seed: number): TrainableModel {
  return new MoEGPT(cfg, seed);
}

/** Model FLOPs per token (fwd + bwd, Megatron convention, src/model/flops.ts; no recompute). */
export function flopsPerToken(cfg: ModelConfig, seqLen: number): number {
  return modelFlops(cfg, { seqLen }).flopsPerToken;
}
