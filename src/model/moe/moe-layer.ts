// The MoE layer: route → permute → grouped experts → unpermute → + shared expert.
// Hidden states [B, S, H] (or [T, H]) are flattened batch-major to [T = B·S, H] (t = b·S + s).
// Two host syncs per layer: the logits in forward, ∂L/∂permutedProbs in backward.
//
//   const rec = new SavedActivations('layers.3.moe');
//   const y = moe.forward(x, rec, ctx);            // saves x, permutedTokens, fc1Out, act, ... + the host 'plan'
//   const dx = moe.backward(dy, rec, grads, ctx);  // adds router/expert/shared grads and lossScale·∂(aux+z)
//   moe.updateExpertBias(); moe.resetGlobalAux();  // once per global batch (trainer)
import { tf } from '../../backend/tf.ts';
import type { ModelConfig } from '../config.ts';
import type { Module, ParamStore, GradStore, ForwardContext } from '../module.ts';
import type { SavedActivations } from '../saved.ts';
import { GlobalAuxTracker } from '../routing/aux-loss.ts';
import { updateExpertBias } from '../routing/expert-bias.ts';
import type { RoutingPlan } from '../routing/plan.ts';
import { Router } from './router.ts';
import { GroupedExperts, type InitWeight } from './experts.ts';
import { SharedExpert } from './shared-expert.ts';
import { permuteTokens, scatterAddRows } from './permute.ts';

export class MoELayer implements Module {
  readonly router: Router;
  readonly experts: GroupedExperts;
  readonly shared: SharedExpert | null;
  readonly savedNames: readonly string[];
  /** Aux-loss-free balancing bias [E] (a buffer, no gradient): selection only. */
  expertBias: Float32Array;
  /** Counts of the final routing map accumulated over the training forwards of a global batch. [E] */
  readonly localTokensPerExpert: Float64Array;
  /** Running counts for the 'global' aux loss. */
  readonly globalTracker: GlobalAuxTracker;
  /** DP group size of the 'global' aux loss (counts given to the tracker are the group's sum). */
  globalGroupSize = 1;
  /** EP-group aux counts: given this rank's aux-map counts, return the group's (own included). null = group of one. */
  epGroupCounts: ((localCounts: Float64Array) => Float64Array[]) | null = null;

  constructor(readonly cfg: ModelConfig, readonly layer: number, params: ParamStore, readonly prefix: string, initWeight: InitWeight) {
    const moe = cfg.moe, H = cfg.hiddenSize, E = moe.numExperts;
    const seed = 1000 * (layer + 1);
    this.router = new Router(`${prefix}.router`, moe, H, layer, params, initWeight, seed);
    this.experts = new GroupedExperts(`${prefix}.experts`, E, H, moe.expertHiddenSize, params, initWeight, seed + 10);
    this.shared = moe.numSharedExperts > 0
      ? new SharedExpert(`${prefix}.shared`, H, moe.numSharedExperts * moe.expertHiddenSize, moe.sharedExpertGate, params, initWeight, seed + 20)
      : null;
    this.expertBias = new Float32Array(E);
    this.localTokensPerExpert = new Float64Array(E);
    this.globalTracker = new GlobalAuxTracker(E);
    this.savedNames = ['x', ...(moe.inputJitterEps > 0 ? Router.savedNames : []), ...GroupedExperts.savedNames,
      ...(this.shared ? SharedExpert.savedNames.filter((n) => n !== 'sharedGate' || moe.sharedExpertGate) : [])];
  }

  forward(x: tf.Tensor, rec: SavedActivations, ctx: ForwardContext): tf.Tensor {
    const shape = x.shape, H = shape[shape.length - 1], T = x.size / H;
    const seqLen = shape.length === 3 ? shape[1] : T;
    const moe = this.cfg.moe;
    return tf.tidy(() => {
      const x2 = rec.save('x', tf.reshape(x, [T, H]) as tf.Tensor2D);                         // [T, H]
      const plan = this.router.forward(x2, rec, ctx, {
        expertBias: moe.expertBias ? this.expertBias : null, seqLen, globalTracker: this.globalTracker,
        updateGlobalTracker: ctx.recordStats, globalGroupSize: this.globalGroupSize, epGroupCounts: this.epGroupCounts,
      });
      if (ctx.training && ctx.recordStats) this.record(plan, ctx);
      const { sortedIndices, tokensPerExpert, permutedProbs, numRows } = plan.permute;
      const permuted = rec.save('permutedTokens', permuteTokens(x2, sortedIndices),
        (r) => permuteTokens(r.get('x'), r.getHost<RoutingPlan>('plan').permute.sortedIndices));   // [N, H]
      const probs = rec.save('permutedProbs', tf.tensor2d(permutedProbs, [numRows, 1]));       // [N, 1]
      const yPerm = this.experts.forward(permuted, probs, tokensPerExpert, rec);              // [N, H]
      let y: tf.Tensor = scatterAddRows(yPerm, sortedIndices, T);                             // [T, H]
      if (this.shared) y = tf.add(y, this.shared.forward(x2, rec));
      return tf.reshape(y, shape);
    });
  }

  backward(dy: tf.Tensor, rec: SavedActivations, grads: GradStore, ctx: ForwardContext): tf.Tensor {
    const shape = dy.shape, H = shape[shape.length - 1], T = dy.size / H;
    const plan = rec.getHost<RoutingPlan>('plan');
    const { sortedIndices, tokensPerExpert } = plan.permute;
    return tf.tidy(() => {
      const dy2 = tf.reshape(dy, [T, H]) as tf.Tensor2D;
      const dyPerm = permuteTokens(dy2, sortedIndices);                                       // unpermute backward: [N, H]
      const { dx: dxPerm, dProbs } = this.experts.backward(dyPerm, tokensPerExpert, rec, grads);
      let dx: tf.Tensor = scatterAddRows(dxPerm, sortedIndices, T);                           // permute backward: [T, H]
      dx = tf.add(dx, this.router.backward(dProbs.dataSync(), rec, grads, ctx));              // the one host sync of backward
      rec.release('routerJitter');
      if (this.shared) dx = tf.add(dx, this.shared.backward(dy2, rec, grads));
      rec.release('x');                                                                        // after its last reader
      return tf.reshape(dx, shape);
    });
  }

  /** End of a global batch: b ← b + u·sign(mean(c) − c) from `counts` (default: this layer's, e.g. after an all-reduce), then reset. */
  updateExpertBias(counts: ArrayLike<number> = this.localTokensPerExpert): void {
    if (this.cfg.moe.expertBias) this.expertBias = updateExpertBias(this.expertBias, counts, this.cfg.moe.biasUpdateRate);
    this.localTokensPerExpert.fill(0);
  }

  /** End of a global batch: forget the 'global' aux-loss running counts. */
  resetGlobalAux(): void { this.globalTracker.reset(); }

  private record(plan: RoutingPlan, ctx: ForwardContext): void {
    const tpe = Float64Array.from(plan.permute.tokensPerExpert);
    for (let e = 0; e < tpe.length; e++) this.localTokensPerExpert[e] += tpe[e];
    ctx.routerStats.push({ layer: this.layer, tokensPerExpert: tpe, numTokens: plan.T, droppedAssignments: plan.droppedAssignments, auxLosses: { ...plan.auxLosses } });
  }
}
