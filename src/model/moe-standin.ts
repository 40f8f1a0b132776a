// A dense stand-in for the MoE layer (src/model/moe), used only when no MoE factory is available:
// a SwiGLU MLP of width expertHiddenSize·(topk + numSharedExperts), i.e. the activated FFN size.
// It does not have the MoE parameter count and produces no router stats.
import type { ModelConfig } from './config.ts';
import type { ParamStore } from './module.ts';
import type { InitWeight } from './init.ts';
import { SwiGLUMLP } from './mlp.ts';
import type { MoEFactory, MoELike } from './block.ts';

class DenseStandIn extends SwiGLUMLP implements MoELike {
  updateExpertBias(): void {}
  resetGlobalAux(): void {}
}

export const denseMoEStandIn: MoEFactory = (cfg: ModelConfig, _layer: number, params: ParamStore, prefix: string, init: InitWeight) =>
  new DenseStandIn(params, prefix, cfg.hiddenSize, cfg.moe.expertHiddenSize * (cfg.moe.topk + cfg.moe.numSharedExperts), init, 'moe');
