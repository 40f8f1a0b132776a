// Context parallelism: the attention implementation for the model's attention type.
import type { Cluster } from '../../device/cluster.ts';
import type { ProcessGroup } from '../../device/groups.ts';
import type { ModelConfig } from '../../model/config.ts';
import type { StepClock } from '../clock.ts';
import { CPAttention } from './cp-attention.ts';
import { CPMLAttention } from './cp-mla.ts';
import type { ContextParallelAttention } from './ring.ts';

export type { ContextParallelAttention } from './ring.ts';
export { cpPositions, cpShard, positionMask } from './chunking.ts';

/** GQA: K/V ring (cp-attention.ts); MLA: kvUp + shared rope key ring (cp-mla.ts). `seqLen` is the full sequence. */
export function createCPAttention(cfg: ModelConfig, cluster: Cluster, cpGroups: ProcessGroup[], clock: StepClock, seqLen: number): ContextParallelAttention {
  return cfg.attention === 'mla'
    ? new CPMLAttention(cluster, cpGroups, clock, seqLen)
    : new CPAttention(cluster, cpGroups, clock, cfg.headDim, cfg.ropeTheta, seqLen);
}
