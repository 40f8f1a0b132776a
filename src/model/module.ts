// The module contract of the model: parameters by name, gradients by name, and an explicit
// forward/backward pair per module whose only memory between the two is a SavedActivations record.
//
//   const rec = new SavedActivations('layer3.moe');
//   const y = tf.tidy(() => moe.forward(x, rec, ctx));     // saves what backward needs
//   const dx = tf.tidy(() => moe.backward(dy, rec, grads, ctx)); // accumulates parameter grads
//   rec.dispose();
import { tf } from '../backend/tf.ts';
import type { SavedActivations } from './saved.ts';

export interface ParamMeta {
  /** AdamW weight decay applies (matrices yes; norms, biases, embeddings' gains no). */
  decay: boolean;
  /** Routed expert index when the tensor belongs to one expert (or a stacked [E, ...] bank: -1). */
  expert?: number;
}

/** Named trainable tensors (tf.Variable) with metadata. Names are dotted paths: 'layers.2.moe.w1'. */
export class ParamStore {
  readonly vars = new Map<string, tf.Variable>();
  readonly meta = new Map<string, ParamMeta>();

  add(name: string, value: tf.Tensor, meta: ParamMeta): tf.Variable {
    if (this.vars.has(name)) throw new Error(`parameter '${name}' already exists`);
    const v = tf.variable(value, true, name.replace(/[^A-Za-z0-9_./-]/g, '_') + '_' + ParamStore.uid++);
    value.dispose();
    this.vars.set(name, v);
    this.meta.set(name, meta);
    return v;
  }

  get(name: string): tf.Variable {
    const v = this.vars.get(name);
    if (!v) throw new Error(`no parameter '${name}'`);
    return v;
  }

  names(): string[] { return [...this.vars.keys()]; }

  numel(): number { let n = 0; for (const v of this.vars.values()) n += v.size; return n; }

  dispose(): void { for (const v of this.vars.values()) v.dispose(); this.vars.clear(); this.meta.clear(); }

  private static uid = 0;
}

/** Gradients by parameter name, accumulated across modules and micro-batches. */
export class GradStore {
  readonly grads = new Map<string, tf.Tensor>();

  /** grads[name] += g (takes ownership of nothing: `g` is kept, the previous sum disposed). */
  add(name: string, g: tf.Tensor): void {
    const prev = this.grads.get(name);
    if (!prev) { this.grads.set(name, tf.keep(g)); return; }
    const sum = tf.keep(tf.add(prev, g));
    prev.dispose();
    this.grads.set(name, sum);
  }

  get(name: string): tf.Tensor | undefined { return this.grads.get(name); }

  dispose(): void { for (const g of this.grads.values()) g.dispose(); this.grads.clear(); }
}

/** Per-layer routing statistics a MoE layer reports in a training forward (host numbers). */
export interface RouterStats {
  layer: number;
  tokensPerExpert: Float64Array; // [E] after dropping
  numTokens: number;             // T
  droppedAssignments: number;    // routed (token, expert) pairs removed by capacity
  auxLosses: Record<string, number>; // e.g. {switch: 0.0123, z: 0.0004}, already times coeff
}

/** What a forward needs besides its input. */
export interface ForwardContext {
  training: boolean;
  /** 1/M for M micro-batches: the scale of aux and z-loss gradients (moe-semantics §5). */
  lossScale: number;
  /** Base seed of this (step, micro-batch): dropout and jitter derive theirs from it. */
  seed: number;
  /** Router statistics and aux-loss values land here (one entry per MoE layer call). */
  routerStats: RouterStats[];
  /** False on a recomputation replay: side effects (stats, counters) are counted once. */
  recordStats: boolean;
}

export function defaultContext(overrides: Partial<ForwardContext> = {}): ForwardContext {
  return { training: true, lossScale: 1, seed: 1, routerStats: [], recordStats: true, ...overrides };
}

/** A module with an explicit forward and a hand-written backward. */
export interface Module {
  /** y = f(x); saves into `rec` what backward needs (by name). */
  forward(x: tf.Tensor, rec: SavedActivations, ctx: ForwardContext): tf.Tensor;
  /** dx from dy using only `rec`; adds parameter gradients to `grads`. */
  backward(dy: tf.Tensor, rec: SavedActivations, grads: GradStore, ctx: ForwardContext): tf.Tensor;
  /** Names of the activations `forward` saves (for recompute/swap policies and docs). */
  readonly savedNames: readonly string[];
}
