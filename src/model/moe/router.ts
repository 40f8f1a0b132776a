// The router layer: gate linear on tensors, routing decisions on the host (moe-semantics §1).
//   x' = x ⊙ U(1−eps, 1+eps)   (input jitter, training only, seeded from ctx.seed and the layer)
//   logits = x'·Wᵀ             W [E, H]                                           [T, E]
//   one dataSync of logits → routeTokens (score fn, top-k, capacity, aux/z, permute plan)
// Backward: dlogits = ∂L/∂probs through the selected scores (host) + lossScale·∂(aux+z)/∂logits,
// so the trainer's loss never contains the aux terms; then dx = dlogits·W, dW = dlogitsᵀ·x'.
import { tf } from '../../backend/tf.ts';
import type { ParamStore, GradStore, ForwardContext } from '../module.ts';
import type { SavedActivations } from '../saved.ts';
import type { MoEConfig } from '../config.ts';
import { routeTokens, routingBackward, type RouteOptions, type RoutingPlan } from '../routing/plan.ts';
import type { InitWeight } from './experts.ts';

export class Router {
  static readonly savedNames = ['routerJitter'] as const;
  readonly weight: tf.Variable;

  constructor(readonly name: string, readonly moe: MoEConfig, hidden: number, readonly layer: number, params: ParamStore,
    initWeight: InitWeight, seed: number) {
    this.weight = params.add(name, initWeight([moe.numExperts, hidden], 'router', seed), { decay: true });
  }

  /** Seed of the jitter noise for (ctx.seed, layer): identical on a recompute replay. */
  jitterSeed(ctx: ForwardContext): number { return ((ctx.seed * 1_000_003 + this.layer * 7919 + 17) % 2147483646) + 1; }

  /** x [T, H] (saved by the caller as 'x') → the routing plan, kept on `rec` as host value 'plan'. */
  forward(x: tf.Tensor2D, rec: SavedActivations, ctx: ForwardContext, opts: Omit<RouteOptions, 'training'>): RoutingPlan {
    const [T, H] = x.shape, E = this.moe.numExperts, eps = this.moe.inputJitterEps;
    const logits = tf.tidy(() => {
      let xj: tf.Tensor = x;
      if (ctx.training && eps > 0) {
        const noise = rec.save('routerJitter', tf.randomUniform([T, H], 1 - eps, 1 + eps, 'float32', this.jitterSeed(ctx)),
          () => tf.randomUniform([T, H], 1 - eps, 1 + eps, 'float32', this.jitterSeed(ctx)));
        xj = tf.mul(x, noise);
      }
      return tf.matMul(xj, this.weight, false, true);                 // [T, E]
    });
    const host = logits.dataSync() as Float32Array;                     // the one host sync of the forward
    logits.dispose();
    const plan = routeTokens(host, T, E, this.moe, { ...opts, training: ctx.training });
    rec.setHost('plan', plan);
    return plan;
  }

  /** ∂L/∂permutedProbs [N] (host) → dx [T, H]; adds dW. */
  backward(dPermutedProbs: ArrayLike<number>, rec: SavedActivations, grads: GradStore, ctx: ForwardContext): tf.Tensor2D {
    const plan = rec.getHost<RoutingPlan>('plan');
    const dlogitsHost = routingBackward(plan, dPermutedProbs, ctx.lossScale);
    return tf.tidy(() => {
      const x = rec.get<tf.Tensor2D>('x');
      const dlogits = tf.tensor2d(dlogitsHost, [plan.T, plan.E]);   // [T, E]
      const noise = rec.has('routerJitter') ? rec.get('routerJitter') : null;
      const xj = noise ? tf.mul(x, noise) : x;
      grads.add(this.name, tf.matMul(dlogits, xj, true, false));                   // [E, H]
      const dxj = tf.matMul(dlogits, this.weight);                                  // [T, H]
      return (noise ? tf.mul(dxj, noise) : dxj) as tf.Tensor2D;
    });
  }
}
