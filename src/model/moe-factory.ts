// The default MoE factory of MoEGPT: src/model/moe's MoELayer. (moe-standin.ts has a dense
// stand-in for tests that want no routing.)
import type { MoEFactory } from './block.ts';
import { MoELayer } from './moe/moe-layer.ts';

export function defaultMoEFactory(): MoEFactory {
  return (cfg, layer, params, prefix, initWeight) => new MoELayer(cfg, layer, params, prefix, initWeight);
}
