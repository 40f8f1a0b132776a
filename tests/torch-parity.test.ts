// Independent correctness check against PyTorch autograd (bench/torch/ultramoe_torch.py): from the
// same initial weights and batches, the first-step loss, every parameter's gradient and the loss
// after 3 training steps (AdamW, clipping, LR schedule, expert-bias updates) must match, on a few
// shrunken configurations that together cover MLA and GQA, sandwich and pre-norm, sigmoid, softmax
// and pre-softmax routing, group-limited top-k, expert bias, capacity (probs/position, padding),
// switch/seq aux and z losses, shared expert (gated), MTP and tied embeddings.
// Skips (with the reason) when Debian's python3-torch is not importable from /usr/bin/python3.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '../src/backend/tf.ts';
import { resolveConfig, type ConfigOverrides } from '../src/model/config.ts';
import { defaultTrainConfig } from '../src/train/trainer.ts';
import { writeRunDir, trainOurs, runTorchTwin, pythonTorch, compareGrads, TORCH_HINT } from '../bench/vs-torch.ts';

const base: ConfigOverrides = {
  hiddenSize: 64, numLayers: 3, numDenseLayers: 1, denseIntermediateSize: 96, numHeads: 2,
  mla: { qLoraRank: 32, kvLoraRank: 16, qkNopeHeadDim: 16, qkRopeHeadDim: 8, vHeadDim: 16 },
  moe: { numExperts: 16, topk: 4, expertHiddenSize: 32 },
};
const variants: [string, ConfigOverrides][] = [
  ['tiny semantics: MLA, sandwich norm, sigmoid top-k ×2.5, switch aux + z-loss, shared expert', {}],
  ['GQA, pre-norm, softmax after top-k, seq aux, no shared expert, MTP, tied embeddings', {
    attention: 'gqa', numHeads: 4, numKvHeads: 2, headDim: 16, mla: null, norm: 'pre', tieEmbeddings: true, numMtpLayers: 1,
    moe: { numExperts: 16, topk: 4, expertHiddenSize: 32, scoreFunction: 'softmax', topkScalingFactor: null, numSharedExperts: 0,
      auxLoss: [{ type: 'seq', coeff: 1e-2 }] },
  }],
  ['pre-softmax, group-limited top-k, capacity 1.0 (probs policy), gated shared expert', {
    moe: { numExperts: 16, topk: 4, expertHiddenSize: 32, scoreFunction: 'softmax', preSoftmax: true, topkScalingFactor: null,
      numGroups: 4, groupTopk: 2, capacityFactor: 1.0, dropPolicy: 'probs', sharedExpertGate: true },
  }],
  ['sigmoid with expert bias (aux-free), capacity 1.25 position policy padded, no q-LoRA', {
    mla: { qLoraRank: null }, moe: { numExperts: 16, topk: 4, expertHiddenSize: 32, expertBias: true, biasUpdateRate: 1e-2,
      capacityFactor: 1.25, dropPolicy: 'position', padToCapacity: true, auxLoss: [{ type: 'switch', coeff: 1e-2 }] },
  }],
];

const torchOk = pythonTorch();
if (!torchOk.ok) {
  console.log(`torch-parity: skipped: ${torchOk.why}; ${TORCH_HINT}`);
  for (const [name] of variants) test.skip(`torch parity: ${name} (no torch)`, () => {});
} else {
  test.before(async () => { await initBackend('wasm'); });
  for (const [name, o] of variants) {
    test(`torch parity: ${name}`, async () => {
      const cfg = resolveConfig('tiny', { ...base, ...o, mla: o.mla === null ? null : { ...base.mla, ...(o.mla ?? {}) }, moe: { ...base.moe, ...(o.moe ?? {}) } });
      const steps = 3;
      const tc = defaultTrainConfig({ steps, batch: 2, seqLen: 32, microBatches: 1, warmupSteps: 1, evalEvery: 0, seed: 3 });
      const dir = mkdtempSync(join(tmpdir(), 'ultramoe-torch-parity-'));
      try {
        writeRunDir(dir, cfg, tc, steps);
        const ours = await trainOurs(dir, { dumpGrads: 'grads-ours.safetensors' });
        const torch = runTorchTwin(dir, { dumpGrads: true });
        const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);
        const g = compareGrads(join(dir, 'grads-ours.safetensors'), join(dir, 'grads-torch.safetensors'));
        if (process.env.TORCH_PARITY_VERBOSE) console.log(name, ours.losses, torch.losses, ours.evalLmLoss, torch.evalLmLoss, g.globalRel, g.worst[0], g.params);
        assert.ok(rel(ours.losses[0], torch.losses[0]) <= 1e-6, `step-1 loss ${ours.losses[0]} vs torch ${torch.losses[0]}`);
        assert.ok(g.globalRel <= 1e-5, `gradients differ: global rel ${g.globalRel}, worst ${JSON.stringify(g.worst.slice(0, 3))}`);
        assert.ok(g.worst[0].rel <= 1e-4, `gradient of ${g.worst[0].name} differs: rel ${g.worst[0].rel}`);
        for (let i = 0; i < steps; i++) assert.ok(rel(ours.losses[i], torch.losses[i]) <= 1e-4, `step ${i + 1} loss ${ours.losses[i]} vs torch ${torch.losses[i]}`);
        assert.ok(rel(ours.evalLmLoss, torch.evalLmLoss) <= 1e-4, `loss after ${steps} steps ${ours.evalLmLoss} vs torch ${torch.evalLmLoss}`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
}

test.run();
