// Per-device memory (src/sim/memory.ts) against Megatron's formulas (perf-model.md §2.3-2.4).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assertClose } from './support/backends.ts';
import { getSpec } from '../src/device/specs.ts';
import { countParams } from '../src/model/params-count.ts';
import { activationBytesPerToken, memoryBreakdown, RESERVED_BYTES } from '../src/sim/memory.ts';
import { keptBytes, modelCost } from '../src/sim/model-cost.ts';
import { gptConfig, GPT_MODELS } from '../src/sim/workloads.ts';
import { DEFAULT_OPTIONS, type ParallelLayout, type SimOptions } from '../src/sim/types.ts';
import { PAPER_MODEL, PAPER_OPTIMISED_OPTIONS, paperLayout } from '../src/sim/paper.ts';
import { PRESETS } from '../src/model/config.ts';

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

test('MoE expert copy: fc1 input + fc1 output + activation (probs applied in the activation, no fc2 output)', () => {
  const mc = modelCost(PAPER_MODEL, 4096, false);
  const h = PAPER_MODEL.hiddenSize, fe = PAPER_MODEL.moe.expertHiddenSize;
  assert.is(keptBytes(mc.actExpertCopy, null), 2 * h + 2 * 2 * fe + 2 * fe + 4);
  assert.is(keptBytes(mc.actExpertCopy, new Set(['moe-act'])), 2 * h + 2 * 2 * fe + 4);
  // FP8: the GEMM inputs (fc1 input, fc2 input) are cached at 1 byte
  assert.is(keptBytes(mc.actExpertCopy, null, true), h + 2 * 2 * fe + fe + 4);
});

test('DualPipe keeps two parameter copies; BF16 Adam moments take 8 instead of 12 bytes', () => {
  const cfg = PRESETS['deepseek-v3-671b'];
  const mc = modelCost(cfg, 4096, true, true);
  const h800 = getSpec('h800-sxm');
  const l: ParallelLayout = { tp: 1, pp: 16, vpp: 1, ep: 64, cp: 1, dp: 128, microBatch: 1, globalBatch: 15360, seqLen: 4096 };
  const o: SimOptions = { ...DEFAULT_OPTIONS, dtype: 'fp8', recompute: 'selective', recomputeModules: ['norm', 'mla-up-proj'] };
  const one = memoryBreakdown(mc, l, o, h800, '1f1b', 120), two = memoryBreakdown(mc, l, o, h800, 'dualpipe', 120);
  // rank 0 holds the first and the last stage (embedding + dense layers, head + MTP): more than either alone
  assert.ok(two.weights > 1.2 * one.weights, `${two.weights} vs ${one.weights}`);
  const bf = memoryBreakdown(mc, l, { ...o, bf16AdamMoments: true }, h800, 'dualpipe', 120);
  assertClose([bf.optimizer], [(two.optimizer * 8) / 12], 1e-12, 'bf16 moments');
  const sw = memoryBreakdown(mc, l, { ...o, fp8SwigluInputs: true }, h800, 'dualpipe', 120);
  assert.ok(sw.activations < two.activations);
  // FP8 caches GEMM inputs at 1 byte: fewer activation bytes than the same run in BF16
  assert.ok(two.activations < memoryBreakdown(mc, l, { ...o, dtype: 'bf16' }, h800, 'dualpipe', 120).activations);
});

test('Ascend reserve: 58 GB usable on a 64 GB 910B, 54 GB on thousand-card clusters (MindSpore guide)', () => {
  const mc = modelCost(PAPER_MODEL, 4096, false);
  const spec = getSpec('ascend-910b');
  const big = memoryBreakdown(mc, paperLayout(6144), PAPER_OPTIMISED_OPTIONS, spec, 'interleaved', 64);
  assert.is(big.reserved, spec.hbmBytes - 54 * 2 ** 30);
  const small = memoryBreakdown(mc, { ...paperLayout(512), dp: 4, globalBatch: 512 }, PAPER_OPTIMISED_OPTIONS, spec, 'interleaved', 64);
  assert.is(small.reserved, spec.hbmBytes - 58 * 2 ** 30);
  assert.is(memoryBreakdown(mc, paperLayout(6144), PAPER_OPTIMISED_OPTIONS, getSpec('h100-sxm'), 'interleaved', 64).reserved, RESERVED_BYTES);
});

test.run();
