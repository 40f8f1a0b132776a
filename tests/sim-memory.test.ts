// Per-device memory (src/sim/memory.ts) against Megatron's formulas (perf-model.md §2.3-2.4).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assertClose } from './support/backends.ts';
import { getSpec } from '../src/device/specs.ts';
import { countParams } from '../src/model/params-count.ts';
import { activationBytesPerToken, memoryBreakdown } from '../src/sim/memory.ts';
import { modelCost } from '../src/sim/model-cost.ts';
import { gptConfig, GPT_MODELS } from '../src/sim/workloads.ts';
import { DEFAULT_OPTIONS, type ParallelLayout, type SimOptions } from '../src/sim/types.ts';
import { PAPER_MODEL, PAPER_OPTIMISED_OPTIONS, paperLayout } from '../src/sim/paper.ts';

const test = suite('sim-memory');
const a100 = getSpec('a100-sxm-80gb');
const L = (tp: number, pp: number, dp: number, ep = 1): ParallelLayout => ({ tp, pp, vpp: 1, ep, cp: 1, dp, microBatch: 1, globalBatch: 64 * dp, seqLen: 2048 });

test('18 bytes/param without the distributed optimizer, 6 + 12/DP with it', () => {
  const cfg = GPT_MODELS['gpt3-175b'];
  const mc = modelCost(cfg, 2048, true, false);
  const l = L(8, 8, 4);
  const off = memoryBreakdown(mc, l, { ...DEFAULT_OPTIONS, gatedMlp: false, distributedOptimizer: false }, a100, '1f1b', 64);
  const on = memoryBreakdown(mc, l, { ...DEFAULT_OPTIONS, gatedMlp: false, distributedOptimizer: true }, a100, '1f1b', 64);
  const params = off.weights / 2;
  assertClose([off.weights + off.gradients + off.optimizer], [18 * params], 1e-12, 'no dist-opt');
  assertClose([on.weights + on.gradients + on.optimizer], [(6 + 12 / 4) * params], 1e-12, 'dist-opt DP4');
  // the most loaded stage holds ~1/(TP·PP) of the 175B (12 of 96 layers + embedding)
  const h = cfg.hiddenSize;
  assertClose([params], [(12 * 12 * h * h + cfg.vocabSize * h) / 8], 0.01, 'stage params (12h² per GPT layer)');
  assert.ok(countParams(cfg).total > 0);
});

test('Korthikanti: TP + SP + selective recompute stores ~34·s·b·h/t bytes per layer', () => {
  for (const [h, a] of [[12288, 96], [6144, 64], [20480, 128]]) {
    const cfg = gptConfig('g', h, 8, a);
    const mc = modelCost(cfg, 2048, true, false);
    const o = { ...DEFAULT_OPTIONS, gatedMlp: false, recompute: 'selective' as const, recomputeModules: ['core-attn' as const] };
    const perToken = activationBytesPerToken(mc, L(8, 1, 1), o, new Set(['core-attn']), 0).resident;
    assertClose([perToken], [(34 * h) / 8], 0.1, `h${h}`);
    // full recompute keeps only the layer input: 2·s·b·h/t
    const full = activationBytesPerToken(mc, L(8, 1, 1), { ...o, recompute: 'full' }, null, 0).resident;
    assertClose([full], [(2 * h) / 8], 1e-12, 'full');
  }
});

test('MoE activations scale with the imbalance factor; recompute and swap reduce them', () => {
  const mc = modelCost(PAPER_MODEL, 4096, false);
  const spec = getSpec('ascend-910b');
  const l = paperLayout(6144);
  const base: SimOptions = { ...PAPER_OPTIMISED_OPTIONS, swapAttention: false, recompute: 'none' };
  const at = (o: SimOptions) => memoryBreakdown(mc, l, o, spec, 'interleaved', 64).activations;
  assert.ok(at({ ...base, imbalance: 1.5 }) > at({ ...base, imbalance: 1 }) * 1.1, 'imbalance');
  const sel = at({ ...base, recompute: 'selective', recomputeModules: PAPER_OPTIMISED_OPTIONS.recomputeModules });
  assert.ok(sel < at(base), 'selective < none');
  const sw = at({ ...base, swapAttention: true });
  assert.ok(sw < at(base), 'swap < none');
  assert.ok(at({ ...base, recompute: 'full' }) < sel, 'full < selective');
  // the paper's optimised setup fits a 64 GB 910B
  assert.ok(memoryBreakdown(mc, l, PAPER_OPTIMISED_OPTIONS, spec, 'interleaved', 64).fits);
});

test.run();
