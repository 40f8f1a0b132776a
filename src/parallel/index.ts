// Public surface of the EP/DP/TP/CP executors (docs/parallel.md), plus the one-call constructor the
// trainer/CLI uses for `ultramoe train --parallel tp=2,ep=4,dp=2 --device ascend-910b`.
import { Cluster } from '../device/cluster.ts';
import { resolveSpec } from '../device/spec-file.ts';
import type { Dtype } from '../device/specs.ts';
import type { ModelConfig } from '../model/config.ts';
import { parseLayout, resolveLayout } from './layout.ts';
import { ParallelModel, type ParallelModelOptions } from './parallel-model.ts';

export { parseLayout, layoutProblems, resolveLayout, formatLayout, LayoutError, type ParallelSpec, type ResolvedLayout } from './layout.ts';
export { ParallelModel, type ParallelModelOptions, type ParallelStepReport, type ParallelSummary } from './parallel-model.ts';
export { DistributedAdamW } from './dp/distributed-adamw.ts';
export { referenceStep, localShard } from './reference.ts';
export type { DispatcherKind } from './ep/ep-moe.ts';

export interface CreateParallelOptions extends Omit<ParallelModelOptions, 'layout'> {
  /** 'tp=2,ep=4,dp=2' */
  parallel: string;
  /** device spec name or JSON file (device/spec-file.ts), default 'ascend-910b' */
  device?: string;
  /** scale HBM down for toy runs */
  hbmBytes?: number;
  devicesPerNode?: number;
  /** simulated element type for memory and wire bytes */
  dtype?: Dtype;
}

/** Validate the layout against the model and batch, size a cluster to fit it, and build the model. */
export function createParallelModel(cfg: ModelConfig, o: CreateParallelOptions): { model: ParallelModel; cluster: Cluster } {
  const spec = resolveSpec(o.device ?? 'ascend-910b', o.hbmBytes !== undefined ? { hbmBytes: o.hbmBytes } : {});
  const layout = resolveLayout(parseLayout(o.parallel), { model: cfg, globalBatch: o.globalBatch, seqLen: o.seqLen, microBatches: o.microBatches });
  const perNode = o.devicesPerNode ?? spec.devicesPerNode;
  const cluster = new Cluster({ spec, nodes: Math.ceil(layout.world / perNode), devicesPerNode: perNode, dtype: o.dtype });
  return { model: new ParallelModel(cfg, cluster, { ...o, layout }), cluster };
}
