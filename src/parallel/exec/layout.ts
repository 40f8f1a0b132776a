// The executor's view of a model: saved-activation descriptors under the names the records really
// use, per-layer forward FLOPs, and the chunk costs charged to the simulated devices. Pure.
//
// modelLayout (src/parallel/memory) names MoE entries 'moe.x', 'moe.act', ...; the MoE layer saves
// them unprefixed in the layer's record ('x', 'act', ...), so the prefix is stripped here (the module
// classes are computed from the prefixed names, so nothing else changes).
import type { ModelConfig } from '../../model/config.ts';
import { modelLayout, type SavedActivationDesc } from '../memory/descriptors.ts';
import type { ChunkCosts } from './stage-runner.ts';

export interface ExecLayout {
  /** Descriptors with record names (one micro-batch). */
  descs: SavedActivationDesc[];
  layerFlops: Map<number, number>;
  costs: ChunkCosts;
  recomputeFlops: (layer: number, name: string) => number;
  /** Saved bytes per micro-batch outside the layers: embedding record (first stage), head + MTP records (last stage). */
  preBytes: number;
  postBytes: number;
}

/** Record name of a descriptor name. */
export const recordName = (name: string): string => name.replace(/^moe\./, '');

export function execLayout(cfg: ModelConfig, batch: number, seqLen: number, opts: { ep?: number; chargeEmbeddingHead?: boolean } = {}): ExecLayout {
  const lay = modelLayout(cfg, { seqLen, microBatchSize: batch, ep: opts.ep });
  const descs: SavedActivationDesc[] = [];
  for (const d of lay.descs) {
    descs.push({ ...d, name: recordName(d.name) });
    // modelLayout has no entry for the router's input-jitter noise (saved when inputJitterEps > 0)
    if (d.name === 'moe.x' && cfg.moe.inputJitterEps > 0)
      descs.push({ layer: d.layer, module: 'router', name: 'routerJitter', bytes: d.bytes, recomputeFlops: d.bytes / 4 });
  }
  const flopsOf = new Map(descs.map((d) => [`${d.layer}/${d.name}`, d.recomputeFlops]));
  const T = batch * seqLen, H = cfg.hiddenSize, V = cfg.vocabSize;
  const headFlops = 2 * T * H * V;
  const lastFlops = lay.forwardFlops.get(cfg.numLayers - 1) ?? 0;
  const costs: ChunkCosts = {
    layerForwardFlops: (l) => lay.forwardFlops.get(l) ?? 0,
    embeddingBytes: 2 * T * H * 4,                        // gather: read + write the rows
    headFlops,
    mtpFlops: lastFlops + 2 * T * 2 * H * H + headFlops, // block + projection + head
    chargeEmbeddingHead: opts.chargeEmbeddingHead ?? true,
  };
  // embedding: the token ids (int32); head: finalNorm.x/.rstd, head.x, ce.probs. An MTP depth saves about
  // a block, its projection input and a head (approximate: MTP records are not itemised here).
  const headBytes = T * (2 * H + 1 + V) * 4;
  const lastBytes = descs.filter((d) => d.layer === cfg.numLayers - 1).reduce((a, d) => a + d.bytes, 0);
  const postBytes = headBytes + cfg.numMtpLayers * (lastBytes + 2 * T * H * 4 + headBytes);
  return { descs, layerFlops: lay.forwardFlops, costs, recomputeFlops: (l, n) => flopsOf.get(`${l}/${n}`) ?? 0, preBytes: T * 4, postBytes };
}
