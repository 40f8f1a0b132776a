// Recompute recipes the executor supplies for saved entries whose module registered none.
// Each rebuilds the tensor from what the record still holds (tensors or host values) with the
// module's public pieces, so the rebuilt value is bitwise the saved one.
//   permutedProbs [N, 1]: the routing plan's permuted probabilities (host, kept in 'plan')
// (Hook for the MoE owner: `rec.save('permutedProbs', …, recipe)` in MoELayer.forward makes this moot.)
import { tf } from '../../backend/tf.ts';
import type { Restorer } from '../../model/saved.ts';
import type { RoutingPlan } from '../../model/routing/plan.ts';

const RECIPES: Record<string, Restorer> = {
  permutedProbs: (r) => {
    const p = r.getHost<RoutingPlan>('plan').permute;
    return tf.tensor2d(p.permutedProbs, [p.numRows, 1]);
  },
};

/** A fallback recipe for `name`, or null. */
export function fallbackRecipe(name: string): Restorer | null { return RECIPES[name] ?? null; }
