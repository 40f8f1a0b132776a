// Whole-model gradient: MoEGPT.forwardBackward (hand-written backward through every layer, MTP
// and the head) against tf.grads of the functional reference forward in model-reference.ts,
// for MLA/GQA × sandwich/pre norm, with MTP, untied and tied heads.
import { forEachBackend, tf, assert, assertClose } from './support/backends.ts';
import { resolveConfig, type ConfigOverrides } from '../src/model/config.ts';
import { MoEGPT } from '../src/model/gpt.ts';
import { GradStore, defaultContext } from '../src/model/module.ts';
import { refGrads, standInMoERef, type MoERef } from './model-reference.ts';
import { denseMoEStandIn } from '../src/model/moe-standin.ts';
import { MoELayer } from '../src/model/moe/moe-layer.ts';
import { referenceMoELayer } from '../src/model/moe/reference.ts';
import type { MoEFactory } from '../src/model/block.ts';
import type { RoutingPlan } from '../src/model/routing/plan.ts';
import type { SavedActivations } from '../src/model/saved.ts';
import type { ForwardContext } from '../src/model/module.ts';

/** The real MoE layer, remembering each forward's host routing plan by parameter prefix. */
function capturingMoE(plans: Map<string, RoutingPlan>): MoEFactory {
  return (cfg, layer, params, prefix, init) => {
    const m = new MoELayer(cfg, layer, params, prefix, init);
    const fwd = m.forward.bind(m);
    m.forward = (x: tf.Tensor, rec: SavedActivations, ctx: ForwardContext) => {
      const y = fwd(x, rec, ctx);
      plans.set(prefix, rec.getHost<RoutingPlan>('plan'));
      return y;
    };
    return m;
  };
}

/** The MoE reference of src/model/moe/reference.ts with the captured (fixed) routing. */
function moeRef(plans: Map<string, RoutingPlan>): MoERef {
  return (cfg, p, prefix, x) => {
    const hasShared = cfg.moe.numSharedExperts > 0;
    return referenceMoELayer(x, {
      router: p(`${prefix}.router`), w1: p(`${prefix}.experts.w1`), w3: p(`${prefix}.experts.w3`), w2: p(`${prefix}.experts.w2`),
      shared: hasShared ? { w1: p(`${prefix}.shared.w1`), w3: p(`${prefix}.shared.w3`), w2: p(`${prefix}.shared.w2`), gate: null } : null,
    }, plans.get(prefix)!, cfg.moe, { seqLen: S });
  };
}

const B = 2, S = 6;
const small: ConfigOverrides = {
  vocabSize: 64, hiddenSize: 32, numLayers: 3, numDenseLayers: 1, denseIntermediateSize: 48, numHeads: 4, numKvHeads: 2, headDim: 8,
  mla: { qLoraRank: 16, kvLoraRank: 8, qkNopeHeadDim: 8, qkRopeHeadDim: 4, vHeadDim: 8 },
  numMtpLayers: 1, init: 'normal', embeddingStd: 1,
  moe: { numExperts: 16, topk: 4, expertHiddenSize: 8 },
};

function data(V: number): { tokens: Int32Array; targets: Int32Array } {
  const tokens = new Int32Array(B * S), targets = new Int32Array(B * S);
  for (let i = 0; i < B * S; i++) { tokens[i] = (i * 13 + 5) % V; targets[i] = (i * 7 + 3) % V; }
  targets[4] = -1; // an ignored position
  return { tokens, targets };
}

const variants: [string, ConfigOverrides, boolean][] = [
  ['MoE (16 experts top-4, sigmoid, switch aux + z) MLA sandwich', { attention: 'mla', norm: 'sandwich' }, true],
  ['MoE GQA pre-norm, softmax router, seq aux', { attention: 'gqa', norm: 'pre', moe: { ...small.moe, scoreFunction: 'softmax', topkScalingFactor: null, auxLoss: [{ type: 'seq', coeff: 0.1 }] } }, true],
  ['dense stand-in, MLA sandwich', { attention: 'mla', norm: 'sandwich' }, false],
  ['dense stand-in, GQA pre-norm', { attention: 'gqa', norm: 'pre' }, false],
  ['dense stand-in, GQA sandwich, 2 MTP depths', { attention: 'gqa', norm: 'sandwich', numMtpLayers: 2 }, false],
  ['dense stand-in, MLA pre-norm tied, no q-LoRA', { attention: 'mla', norm: 'pre', tieEmbeddings: true, mla: { ...small.mla!, qLoraRank: null } }, false],
];

forEachBackend('model-grad', (test) => {
  for (const [name, ov, realMoE] of variants) {
    test(`${name}: d(total loss)/d(every param) = tf.grads of the functional reference`, () => {
      const cfg = resolveConfig('tiny', { ...small, ...ov, moe: { ...small.moe, zLossCoeff: 0.01, auxLoss: [{ type: 'switch', coeff: 0.1 }], ...(ov.moe ?? {}) } });
      const plans = new Map<string, RoutingPlan>();
      const model = new MoEGPT(cfg, 5, { makeMoE: realMoE ? capturingMoE(plans) : denseMoEStandIn });
      // perturb the norm gains so their gradients are not special
      for (const n of model.params.names()) if (n.endsWith('Norm.weight')) { const v = model.params.get(n); v.assign(tf.add(v, tf.randomNormal(v.shape, 0, 0.2, 'float32', 9))); }
      const { tokens, targets } = data(cfg.vocabSize);
      const grads = new GradStore();
      const ctx = defaultContext({ lossScale: 0.5 });
      const r = model.forwardBackward(tokens, targets, B, S, ctx, grads);
      const ref = refGrads(cfg, model.params, tokens, targets, B, S, realMoE ? moeRef(plans) : standInMoERef, 0.5);
      if (realMoE) assert.ok(r.auxLoss > 0 && ctx.routerStats.length === cfg.numLayers - cfg.numDenseLayers + 1, 'aux losses and router stats of every MoE layer (incl. MTP)');
      assert.ok(Math.abs(r.loss - ref.loss) < 1e-4 * Math.abs(ref.loss), `loss ${r.loss} vs ${ref.loss}`);
      for (const n of model.params.names()) {
        const g = grads.get(n);
        assert.ok(g, `no gradient for ${n}`);
        assertClose(g!.dataSync(), ref.grads.get(n)!, 1e-4, n);
      }
      grads.dispose(); model.dispose();
    });
  }
});
