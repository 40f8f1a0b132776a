// Load tracking and prediction (MindSpeed `planner.py::predict_expert_load`, pangu-ultra-moe.md §6.5):
// tokens per expert per layer are summed over a step, then folded into an exponential moving average
//   predicted_{t+1} = θ · predicted_t + (1 − θ) · observed_t,   θ = emaWeight (MindSpeed default 0.9).
// The first step initializes the prediction with the observation (no bias towards zero).
// The gate (`fine_grained_expert_placement_thre` = 0.08) re-places a layer only when the coefficient of
// variation of its predicted device loads drops by at least `threshold`.
import { balance, deviceLoads, PlacementError, type LayerPlacement } from './types.ts';

export interface LoadTrackerOptions {
  numLayers: number;
  numExperts: number;
  emaWeight?: number; // θ in [0, 1); default 0.9
}

export class LoadTracker {
  readonly numLayers: number;
  readonly numExperts: number;
  readonly emaWeight: number;
  private readonly current: Float64Array[]; // [L][N] tokens recorded in the open step
  private readonly ema: Float64Array[]; // [L][N] predicted tokens per expert
  private stepsSeen = 0;

  constructor(o: LoadTrackerOptions) {
    const p: string[] = [];
    if (!Number.isInteger(o.numLayers) || o.numLayers <= 0) p.push(`numLayers must be a positive integer (got ${o.numLayers})`);
    if (!Number.isInteger(o.numExperts) || o.numExperts <= 0) p.push(`numExperts must be a positive integer (got ${o.numExperts})`);
    const w = o.emaWeight ?? 0.9;
    if (!(w >= 0 && w < 1)) p.push(`emaWeight must be in [0, 1) (got ${w})`);
    if (p.length) throw new PlacementError(p);
    this.numLayers = o.numLayers; this.numExperts = o.numExperts; this.emaWeight = w;
    this.current = Array.from({ length: o.numLayers }, () => new Float64Array(o.numExperts));
    this.ema = Array.from({ length: o.numLayers }, () => new Float64Array(o.numExperts));
  }

  /** Add one router call's `tokensPerExpert` [N] for `layer` (several calls per step add up). */
  record(layer: number, tokensPerExpert: ArrayLike<number>): void {
    if (!(Number.isInteger(layer) && layer >= 0 && layer < this.numLayers)) throw new Error(`LoadTracker.record: layer ${layer} not in [0, ${this.numLayers})`);
    if (tokensPerExpert.length !== this.numExperts) throw new Error(`LoadTracker.record: ${tokensPerExpert.length} loads, expected ${this.numExperts}`);
    const row = this.current[layer];
    for (let e = 0; e < this.numExperts; e++) row[e] += tokensPerExpert[e];
  }

  /** Close the step: fold its loads into the EMA and clear them. Returns the number of steps seen. */
  endStep(): number {
    const θ = this.stepsSeen === 0 ? 0 : this.emaWeight;
    for (let l = 0; l < this.numLayers; l++) {
      const ema = this.ema[l], cur = this.current[l];
      for (let e = 0; e < this.numExperts; e++) { ema[e] = θ * ema[e] + (1 - θ) * cur[e]; cur[e] = 0; }
    }
    return ++this.stepsSeen;
  }

  get steps(): number { return this.stepsSeen; }

  /** Predicted tokens per expert [N] for `layer` (a copy). */
  predicted(layer: number): number[] { return Array.from(this.ema[layer]); }

  /** Predicted loads [L][N] for every layer. */
  predictedAll(): number[][] { return this.ema.map((r) => Array.from(r)); }
}

export interface GateDecision {
  replace: boolean;
  cvBefore: number; // CV of predicted device loads under the current placement
  cvAfter: number; // ... under the candidate placement
  maxOverMeanBefore: number;
  maxOverMeanAfter: number;
}

/** Re-place iff the predicted device-load CV improves by at least `threshold` (absolute). */
export function gate(
  current: LayerPlacement, candidate: LayerPlacement, predicted: ArrayLike<number>, numDevices: number, threshold: number,
): GateDecision {
  const before = balance(deviceLoads(current.physicalToLogical, predicted, numDevices));
  const after = balance(deviceLoads(candidate.physicalToLogical, predicted, numDevices));
  return {
    replace: before.cv - after.cv >= threshold,
    cvBefore: before.cv, cvAfter: after.cv, maxOverMeanBefore: before.maxOverMean, maxOverMeanAfter: after.maxOverMean,
  };
}
