// Megatron FLOPs (src/model/flops.ts): hand-computed small config, the GPT closed form, and the
// published per-token values for Pangu Ultra MoE (pangu-ultra-moe.md §7).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assertClose } from './support/backends.ts';
import { PRESETS, resolveConfig } from '../src/model/config.ts';
import { layerFlops, modelFlops } from '../src/model/flops.ts';
import { gptConfig } from '../src/sim/workloads.ts';

const test = suite('flops');

test('hand-computed tiny MLA + MoE config', () => {
  const cfg = resolveConfig('tiny'); // h128, 4 layers (1 dense), 4 heads, MLA q64 kv32 nope32 rope16 v32, 256×64 top-8, 1 shared, V256
  const s = 64;
  // attention linear per layer: q 64·(128+4·48+1) + kv 32·(128+4·64+1) + 128·16 + 4·32·128
  const attnLin = 64 * 321 + 32 * 385 + 2048 + 16384;      // 20544 + 12320 + 2048 + 16384 = 51296
  const core = s * (4 * 48) / 2 + s * (4 * 32) / 2;           // causal: 6144 + 4096 = 10240
  const dense = 128 * 384 * 3;                                 // 147456
  const moe = 128 * 64 * 3 * (8 + 1);                          // 221184
  const logits = 128 * 256;
  const expected = 6 * (4 * (attnLin + core) + dense + 3 * moe + logits);
  const f = modelFlops(cfg, { seqLen: s, batch: 2 });
  assert.is(f.flopsPerToken, expected);
  assert.is(f.flopsPerIteration, expected * 2 * s);
  assert.is(f.perToken.total, expected);
  // non-causal doubles only the core-attention term
  const nc = modelFlops(cfg, { seqLen: s, causal: false });
  assert.is(nc.flopsPerToken - f.flopsPerToken, 6 * 4 * core);
});

test('dense GPT matches the Narayanan closed form (non-causal, GELU)', () => {
  for (const [h, L, a, s, V] of [[12288, 96, 96, 2048, 51200], [6144, 48, 64, 2048, 51200]]) {
    const cfg = gptConfig('gpt', h, L, a, s, V);
    const B = 8;
    const f = modelFlops(cfg, { seqLen: s, batch: B, causal: false, gatedMlp: false });
    const closed = 72 * B * s * L * h * h * (1 + s / (6 * h) + V / (12 * L * h));
    assertClose([f.flopsPerIteration], [closed], 1e-12, `GPT h${h}`);
  }
});

test('Pangu Ultra MoE per-token FLOPs, pangu-ultra-moe.md §7 (GFLOP, no MTP / with MTP)', () => {
  const cfg = PRESETS['pangu-ultra-moe-718b'];
  const noMtp = { ...cfg, numMtpLayers: 0 };
  const cases: Array<[number, boolean, number, number]> = [
    [4096, true, 265, 277], [4096, false, 296, 308], [8192, true, 296, 308], [8192, false, 357, 371],
  ];
  for (const [s, causal, a, b] of cases) {
    // the reference rounds to 1 GFLOP
    assertClose([modelFlops(noMtp, { seqLen: s, causal }).flopsPerToken / 1e9], [a], 0.6 / a, `s${s} causal=${causal} no MTP`);
    assertClose([modelFlops(cfg, { seqLen: s, causal }).flopsPerToken / 1e9], [b], 0.6 / b, `s${s} causal=${causal} MTP`);
  }
  // 6·N_activated undercounts (misses core attention, part of logits, MTP): 6 × 39.2B ≈ 235 GFLOP
  const f = modelFlops(cfg, { seqLen: 4096 });
  assertClose([f.sixN / 1e9], [235], 0.01, '6N');
  assert.ok(f.flopsPerToken > f.sixN);
});

test('DeepSeek-V3 components: MTP counted as an extra MoE layer, logits twice', () => {
  const cfg = PRESETS['deepseek-v3-671b'];
  const f = modelFlops(cfg, { seqLen: 4096 });
  assert.equal(f.counts, { layers: 62, denseLayers: 3, moeLayers: 59, mtpLayers: 1 });
  const lf = layerFlops(cfg, 4096);
  assert.is(f.perToken.logits, 3 * lf.logits * 2);
  assert.is(f.perToken.routedExperts, 3 * lf.expertPerCopy * 8 * 59);
  // DeepSeek-V3 at s=4096, Megatron causal with MTP: 260.0 GFLOP/token (computed by this formula; perf-model.md §3 derives ~401 TFLOPS/GPU from it)
  assertClose([f.flopsPerToken / 1e9], [259.99], 1e-3, 'DSv3');
});

test.run();
