// Executed adaptive pipe overlap (Pangu Ultra MoE §6.2) on the simulated cluster: one EP × PP
// pipelined MoE training step issued op by op onto 32 simulated NPUs, with and without overlap,
// measured on the timeline and set next to the pure model (src/parallel/pipeline/overlap.ts).
// See docs/overlap.md.
import { Cluster } from '../../device/cluster.ts';
import { DTYPE_BYTES, getSpec, type DeviceSpec } from '../../device/specs.ts';
import { planPipeOverlap, stepOverlap } from '../pipeline/overlap.ts';
import { layerCosts, meanLayerTimes, type LayerCost, type OverlapLayerShape, type RoutingSpec } from './costs.ts';
import { executeOverlapStep, overlapPlacement, type StagePlacement } from './execute.ts';
import { measureOverlap, type OverlapStats } from './measure.ts';
import { planOverlapStep, type OverlapExecMode } from './plan.ts';

export * from './costs.ts';
export * from './plan.ts';
export * from './execute.ts';
export * from './measure.ts';

/** The documented layer (docs/pipeline.md §3): Pangu-Ultra-MoE shapes as one rank of TP=8 + SP sees them. */
export const PANGU_OVERLAP_LAYER: OverlapLayerShape = {
  tokens: 512, hidden: 7680, experts: 256, topk: 8, expertFfn: 2048, sharedFfn: 2048, attnFlopsPerToken: 0.56e9,
};

export interface OverlapRunConfig {
  spec?: DeviceSpec;
  shape?: OverlapLayerShape;
  pp?: number;
  ep?: number;
  nodes?: number;
  microBatches: number;
  layersPerStage: number;
  routing?: RoutingSpec;
}

export interface OverlapRun {
  cluster: Cluster;
  placement: StagePlacement;
  stats: OverlapStats;
  ops: number;
}

/** Routing and costs of every stage (shared by both modes so they run the same ops). */
export function overlapCosts(cfg: OverlapRunConfig, placement: StagePlacement, cluster: Cluster): LayerCost[][][] {
  const shape = cfg.shape ?? PANGU_OVERLAP_LAYER, routing = cfg.routing ?? { zipf: 0, seed: 1 };
  return placement.map((ranks, s) => layerCosts(shape, cluster.spec, ranks.map((r) => cluster.nodeOf(r)), cfg.microBatches, cfg.layersPerStage, { ...routing, seed: routing.seed * 1000 + s }));
}

/** Run one step in `mode` on a fresh cluster (costs may be passed in to reuse the same routing). */
export function runOverlapStep(cfg: OverlapRunConfig, mode: OverlapExecMode, costs?: LayerCost[][][]): OverlapRun & { costs: LayerCost[][][] } {
  const spec = cfg.spec ?? getSpec('ascend-910b');
  const pp = cfg.pp ?? 4, ep = cfg.ep ?? 8;
  const cluster = new Cluster({ spec, nodes: cfg.nodes ?? 4, dtype: 'bf16' });
  const placement = overlapPlacement(pp, ep, cluster.devicesPerNode);
  const c = costs ?? overlapCosts(cfg, placement, cluster);
  const shape = cfg.shape ?? PANGU_OVERLAP_LAYER;
  const programs = planOverlapStep({
    pp, microBatches: cfg.microBatches, layersPerStage: cfg.layersPerStage, costs: c,
    p2pBytes: shape.tokens * shape.hidden * DTYPE_BYTES.bf16, mode,
  });
  const r = executeOverlapStep(cluster, programs, placement);
  return { cluster, placement, stats: measureOverlap(cluster.timeline, placement), ops: r.issued, costs: c };
}

/** The pure model's prediction for the same (mean) layer durations. */
export function pureOverlapPrediction(costs: LayerCost[][][], cfg: OverlapRunConfig) {
  const pp = cfg.pp ?? 4;
  return costs.map((stageCosts, s) => {
    const t = meanLayerTimes(stageCosts);
    const fb = planPipeOverlap(t, cfg.layersPerStage, 'fb'), none = planPipeOverlap(t, cfg.layersPerStage, 'none');
    const step = stepOverlap(t, cfg.layersPerStage, pp, cfg.microBatches, s);
    return { stage: s, times: t, fbPairTime: fb.time, nonePairTime: none.time, steadyHidden: fb.hiddenFraction, stepHidden: step.hiddenFraction, step };
  });
}

/** Both modes with the same routing, plus the pure model. */
export function compareOverlapModes(cfg: OverlapRunConfig) {
  const off = runOverlapStep(cfg, 'off');
  const on = runOverlapStep(cfg, 'on', off.costs);
  return { off, on, pure: pureOverlapPrediction(off.costs, cfg) };
}
