// Saved activations by name: every entry with a recompute recipe can be dropped after the forward
// (or moved to host memory) and the backward still gives identical gradients.
import { forEachBackend, tf, assert, assertClose } from './support/backends.ts';
import { resolveConfig, type ConfigOverrides } from '../src/model/config.ts';
import { MoEGPT } from '../src/model/gpt.ts';
import { GradStore, defaultContext } from '../src/model/module.ts';
import type { SavedActivations } from '../src/model/saved.ts';

const base: ConfigOverrides = {
  vocabSize: 64, hiddenSize: 32, numLayers: 2, numDenseLayers: 1, denseIntermediateSize: 48, numHeads: 2, numKvHeads: 1, headDim: 8,
  mla: { qLoraRank: 16, kvLoraRank: 8, qkNopeHeadDim: 8, qkRopeHeadDim: 4, vHeadDim: 8 },
  numMtpLayers: 1, moe: { numExperts: 8, topk: 2, expertHiddenSize: 8 },
};
const B = 2, S = 6;
const tokens = Int32Array.from({ length: B * S }, (_, i) => (i * 5 + 1) % 64);
const targets = Int32Array.from({ length: B * S }, (_, i) => (i * 3 + 2) % 64);

function grads(model: MoEGPT, policy: ((recs: SavedActivations[]) => void) | null): Map<string, Float32Array> {
  model.onForwardDone = policy;
  const g = new GradStore();
  model.forwardBackward(tokens, targets, B, S, defaultContext(), g);
  const out = new Map([...g.grads].map(([n, t]) => [n, t.dataSync() as Float32Array]));
  g.dispose();
  return out;
}

forEachBackend('model-recompute', (test) => {
  for (const attention of ['mla', 'gqa'] as const) {
    test(`${attention}: drop every entry with a recipe → identical gradients; host swap → identical`, () => {
      const model = new MoEGPT(resolveConfig('tiny', { ...base, attention }), 3);
      const ref = grads(model, null);
      const dropped: string[] = [];
      const got = grads(model, (recs) => {
        for (const r of recs) for (const i of r.list()) {
          try { r.drop(i.name); dropped.push(`${r.owner}:${i.name}`); } catch { /* no recipe: stays resident */ }
        }
      });
      const must = attention === 'mla'
        ? ['layers.0:mla.x', 'layers.0:mla.kvUp', 'layers.0:mla.probs', 'layers.0:mla.q', 'layers.0:mla.ctx', 'layers.0:mlp.act', 'layers.0:mlp.x', 'layers.1:attnNorm.rstd', 'layers.1:x']
        : ['layers.0:attn.x', 'layers.0:attn.q', 'layers.0:attn.k', 'layers.0:attn.v', 'layers.0:attn.probs', 'layers.0:attn.ctx', 'layers.0:mlp.fc1'];
      for (const n of must) assert.ok(dropped.includes(n), `${n} has a recompute recipe (dropped: ${dropped.length})`);
      for (const [n, g] of ref) assertClose(got.get(n)!, g, 1e-5, `recompute ${n}`);
      const swapped = grads(model, (recs) => { for (const r of recs) for (const i of r.list()) r.toHost(i.name); });
      for (const [n, g] of ref) assertClose(swapped.get(n)!, g, 0, `swap ${n}`);
      const n0 = tf.memory().numTensors;
      grads(model, null);
      assert.is(tf.memory().numTensors, n0);
      model.dispose();
    });
  }
});
