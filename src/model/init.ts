// Deterministic parameter initialisation (pangu-ultra-moe.md §2).
//   tiny   (TinyInit): every matrix N(0, σ), σ = sqrt(1/(2·d·L)), d = hidden, L = layers.
//   normal (GPT-2/Megatron): N(0, 0.02); residual output projections N(0, 0.02/sqrt(2L)).
// Embeddings use cfg.embeddingStd; norm gains start at 1 except the DSSN post-norm gains,
// which start at c/sqrt(L) (c_attn, c_mlp = cfg.sandwichGain).
// Seeds: tf.randomNormal ignores seed 0 (tfjs-notes P19), so every seed is mixed into [1, 2^31).
import { tf } from '../backend/tf.ts';
import type { ModelConfig } from './config.ts';

export type InitRole = 'linear' | 'out' | 'router';
/** What the MoE layer (and every module constructor) receives to create its weights. */
export type InitWeight = (shape: number[], role: InitRole, seed: number) => tf.Tensor;

/** FNV-1a hash of a parameter name, for per-parameter seeds: initWeight(shape, role, seedOf(name)). */
export function seedOf(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) { h ^= name.charCodeAt(i); h = Math.imul(h, 0x01000193); }
  return h >>> 0;
}

/** Combine the model seed with a per-parameter seed; never 0. */
export function mixSeed(modelSeed: number, seed: number): number {
  let h = Math.imul((modelSeed | 0) ^ 0x9e3779b9, 0x85ebca6b) ^ (seed | 0);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  h ^= h >>> 16;
  return ((h >>> 0) % 0x7ffffffe) + 1;
}

/** Standard deviation of a weight matrix of `role` under cfg.init. */
export function initStd(cfg: ModelConfig, role: InitRole): number {
  const L = cfg.numLayers;
  if (cfg.init === 'tiny') return Math.sqrt(1 / (2 * cfg.hiddenSize * L));
  return role === 'out' ? 0.02 / Math.sqrt(2 * L) : 0.02;
}

/**
 * Memo of initial draws, for building many replicas of one seeded model (parallel/replica.ts): a
 * draw N(0, std) of a shape and mixed seed runs once (tfjs's seeded randomNormal is slow JS, ~0.7 s
 * per `tiny`); later identical draws get a tensor sharing its data, so every replica starts from
 * bit-identical weights. Sharing is safe: tensors are immutable and optimizers assign fresh ones.
 * dispose() drops the memo's references (the parameters keep theirs); later draws are not memoised.
 */
export class InitMemo {
  private readonly draws = new Map<string, tf.Tensor>();
  private disposed = false;

  randomNormal(shape: number[], std: number, seed: number): tf.Tensor {
    if (this.disposed) return tf.randomNormal(shape, 0, std, 'float32', seed);
    const key = `${shape.join('x')}|${std}|${seed}`;
    let t = this.draws.get(key);
    if (!t) this.draws.set(key, (t = tf.keep(tf.randomNormal(shape, 0, std, 'float32', seed))));
    return tf.reshape(t, shape); // shares t's data (no copy)
  }

  dispose(): void { for (const t of this.draws.values()) t.dispose(); this.draws.clear(); this.disposed = true; }
}

const normal = (shape: number[], std: number, seed: number, memo?: InitMemo) =>
  (memo ? memo.randomNormal(shape, std, seed) : tf.randomNormal(shape, 0, std, 'float32', seed));

/** The `initWeight` of a model: N(0, initStd(role)), seeded by (modelSeed, seed); `memo` shares draws between replicas. */
export function makeInitWeight(cfg: ModelConfig, modelSeed: number, memo?: InitMemo): InitWeight {
  return (shape, role, seed) => normal(shape, initStd(cfg, role), mixSeed(modelSeed, seed), memo);
}

/** Embedding table [V, H] ~ N(0, cfg.embeddingStd). */
export function initEmbedding(cfg: ModelConfig, modelSeed: number, name: string, memo?: InitMemo): tf.Tensor {
  return normal([cfg.vocabSize, cfg.hiddenSize], cfg.embeddingStd, mixSeed(modelSeed, seedOf(name)), memo);
}

/** Initial gain of a norm: 1, or c/sqrt(L) for the DSSN post-norms. */
export function normGain(cfg: ModelConfig, kind: 'pre' | 'postAttn' | 'postMlp'): number {
  if (kind === 'pre') return 1;
  const c = kind === 'postAttn' ? cfg.sandwichGain.attn : cfg.sandwichGain.mlp;
  return c / Math.sqrt(cfg.numLayers);
}
