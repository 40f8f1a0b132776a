// Published training runs the cost model is calibrated on and validated against (perf-model.md §3,
// Korthikanti et al. 2022 Table 5 via calculon-ai/calculon `calculon/llm/validation.py`), with the
// dense GPT model shapes they use. Each run states its source and what is assumed [U].
import { PRESETS, resolveConfig, type ModelConfig } from '../model/config.ts';
import type { Dtype } from '../device/specs.ts';
import type { ParallelLayout, RecomputeModule, Schedule } from './types.ts';

/** A Megatron GPT (pre-norm, MHA, GELU MLP 4h, vocab 51200) as a ModelConfig; flops/sim use gatedMlp=false. */
export function gptConfig(name: string, hidden: number, layers: number, heads: number, seq = 2048, vocab = 51200): ModelConfig {
  return resolveConfig('tiny', {
    name, hiddenSize: hidden, numLayers: layers, numDenseLayers: layers, denseIntermediateSize: 4 * hidden,
    numHeads: heads, numKvHeads: heads, headDim: hidden / heads, attention: 'gqa', mla: null, vocabSize: vocab,
    maxSeqLen: seq, norm: 'pre', numMtpLayers: 0,
  });
}

export const GPT_MODELS: Record<string, ModelConfig> = {
  'megatron-22b': gptConfig('megatron-22b', 6144, 48, 64),
  'gpt3-175b': gptConfig('gpt3-175b', 12288, 96, 96),
  'turing-530b': gptConfig('turing-530b', 20480, 105, 128),
  'megatron-1t': gptConfig('megatron-1t', 25600, 128, 160),
};

export type CalibrationGroup = 'gpu' | 'ascend';

export interface PublishedRun {
  id: string;
  model: ModelConfig;
  gatedMlp: boolean;
  device: string;
  layout: ParallelLayout;
  dtype: Dtype;
  /** FP8 scaling granularity (SimOptions.fp8Recipe) */
  fp8Recipe?: 'tensor' | 'block';
  schedule?: Schedule;
  recompute: 'none' | 'selective' | 'full';
  recomputeModules: RecomputeModule[];
  hierarchicalA2A?: boolean;
  adaptivePipeOverlap?: boolean;
  imbalance?: number;
  distributedOptimizer: boolean;
  bf16AdamMoments?: boolean;
  fp8SwigluInputs?: boolean;
  flashAttention?: boolean;
  /** measured throughput, tokens/s (step time = tokens per step / this) */
  tokensPerSecond: number;
  /**
   * Fraction of the wall-clock time spent in training steps when the published figure is whole-run accounting
   * (GPU-hours per token, including failures, restarts, checkpoints and evaluation); the simulated steady-state
   * throughput is multiplied by it before the comparison. Default 1 (a measured steady-state throughput).
   */
  goodput?: number;
  /** which calibration it belongs to, and whether it was used to fit ('fit') or held out ('holdout') */
  group: CalibrationGroup;
  role: 'fit' | 'holdout';
  source: string;
  assumptions: string;
}

const L = (tp: number, pp: number, vpp: number, ep: number, dp: number, microBatch: number, globalBatch: number, seqLen: number): ParallelLayout =>
  ({ tp, pp, vpp, ep, cp: 1, dp, microBatch, globalBatch, seqLen });

const korth = (id: string, model: string, layout: ParallelLayout, full: boolean, seconds: number, role: 'fit' | 'holdout'): PublishedRun => ({
  id, model: GPT_MODELS[model], gatedMlp: false, device: 'a100-sxm-80gb', layout, dtype: 'fp16',
  recompute: full ? 'full' : 'selective', recomputeModules: ['core-attn'], distributedOptimizer: false, flashAttention: false,
  tokensPerSecond: (layout.globalBatch * layout.seqLen) / seconds, group: 'gpu', role,
  source: `Korthikanti et al. 2022 (arXiv 2205.05198) Table 5: ${seconds} s/iteration (${full ? 'full recompute' : 'sequence parallel + selective recompute'}); layouts from calculon-ai/calculon validation/*.json`,
  assumptions: 'A100 80GB Selene, no distributed optimizer, micro-batch/batch as in calculon validation files',
});

const dsv3 = PRESETS['deepseek-v3-671b'];
// Megatron-Bridge H100 DeepSeek-V3 workload config (scripts/performance/configs/deepseek/workload_base_configs.py,
// DEEPSEEK_V3_H100_{BF16,FP8_CS}_BASE_CONFIG): recompute_modules ["mla_up_proj", "mlp"]; Megatron's "mlp" module
// recomputes dense MLP layers only (the 3 dense layers), which is not modelled (<1% of the activations).
const MEG_DSV3_RECOMPUTE: RecomputeModule[] = ['mla-up-proj'];
// DeepEP (flex dispatcher, node-deduplicated dispatch with NVLink forwarding = the hierarchical all-to-all
// here): Megatron-Bridge applies it on Hopper (`apply_deepep`, compute capability 8/9) and the NeMo perf scripts
// say "For H100 we use deepEP". Which dgxc BF16 container had it is not documented: the BF16 runs keep the
// flat all-to-all [U] (with DeepEP at its published bandwidth they would come out ~80% fast, docs/simulator.md).
const BF16_DEEPEP = false;

/**
 * Whole-run goodput of a multi-thousand-GPU pre-training run: Llama 3 reports "higher than 90% effective training
 * time" over a 54-day snapshot on 16K H100 (arXiv 2407.21783 §3.3.4), the only published figure at this scale; the
 * DeepSeek-V3 report gives GPU-hours per trillion tokens (whole-run accounting) and no goodput [U: 0.9 assumed].
 */
export const GOODPUT_WHOLE_RUN = 0.9;

export const PUBLISHED_RUNS: PublishedRun[] = [
  korth('korth-22b-seqsel', 'megatron-22b', L(8, 1, 1, 1, 1, 4, 4, 2048), false, 1.10, 'fit'),
  korth('korth-175b-seqsel', 'gpt3-175b', L(8, 8, 3, 1, 1, 1, 64, 2048), false, 13.75, 'fit'),
  korth('korth-530b-seqsel', 'turing-530b', L(8, 35, 3, 1, 1, 1, 280, 2048), false, 37.83, 'fit'),
  korth('korth-1t-seqsel', 'megatron-1t', L(8, 64, 1, 1, 1, 1, 512, 2048), false, 71.49, 'fit'),
  korth('korth-22b-full', 'megatron-22b', L(8, 1, 1, 1, 1, 4, 4, 2048), true, 1.42, 'holdout'),
  korth('korth-175b-full', 'gpt3-175b', L(8, 8, 3, 1, 1, 1, 64, 2048), true, 18.13, 'holdout'),
  korth('korth-530b-full', 'turing-530b', L(8, 35, 3, 1, 1, 1, 280, 2048), true, 49.05, 'holdout'),
  korth('korth-1t-full', 'megatron-1t', L(8, 64, 1, 1, 1, 1, 512, 2048), true, 94.42, 'holdout'),
  {
    id: 'dsv3-h100x512-bf16', model: dsv3, gatedMlp: true, device: 'h100-sxm', layout: L(2, 8, 4, 64, 32, 1, 4096, 4096), dtype: 'bf16',
    recompute: 'selective', recomputeModules: MEG_DSV3_RECOMPUTE, distributedOptimizer: true, imbalance: 1, hierarchicalA2A: BF16_DEEPEP,
    tokensPerSecond: 342_756, group: 'gpu', role: 'fit',
    source: 'NVIDIA/dgxc-benchmarking deepseek_v3/pretraining/README.md (commit 6be5ea0): 342,756 tok/s, TP2 PP8 EP64 GBS 4096',
    assumptions: 'VPP 4, micro-batch 1, recompute of MLA up-proj (Megatron-Bridge H100 config), forced balance (ρ = 1); flat all-to-all without EP overlap (dgxc BF16 MFU 17.6% suggests none) [U]',
  },
  {
    id: 'dsv3-h100x1024-bf16', model: dsv3, gatedMlp: true, device: 'h100-sxm', layout: L(2, 16, 2, 64, 32, 1, 8192, 4096), dtype: 'bf16',
    recompute: 'selective', recomputeModules: MEG_DSV3_RECOMPUTE, distributedOptimizer: true, imbalance: 1, hierarchicalA2A: BF16_DEEPEP,
    tokensPerSecond: 644_782, group: 'gpu', role: 'holdout',
    source: 'NVIDIA/dgxc-benchmarking deepseek_v3/pretraining/README.md (commit 6be5ea0): 644,782 tok/s, TP2 PP16 EP64 GBS 8192',
    assumptions: 'VPP 2, micro-batch 1, same recompute as the 512-GPU run, ρ = 1 [U]',
  },
  {
    id: 'dsv3-h100x1024-fp8', model: dsv3, gatedMlp: true, device: 'h100-sxm', layout: L(2, 8, 4, 64, 64, 1, 8192, 4096), dtype: 'fp8', fp8Recipe: 'block',
    recompute: 'selective', recomputeModules: MEG_DSV3_RECOMPUTE, distributedOptimizer: true, imbalance: 1, hierarchicalA2A: true,
    tokensPerSecond: 1297 * 1024, group: 'gpu', role: 'holdout',
    source: 'NVIDIA-NeMo/Megatron-Bridge docs/performance-summary-archive.md (25.09): 1,297 tok/s/GPU, TP2 PP8 VP4 EP64 GBS 8192, FP8 with 128x128 weight / 1x128 activation scaling ("match those used in the original DeepSeekV3 pre-training"), forced balance',
    assumptions: 'linear GEMMs at the FP8 peak plus FP8 quantisation traffic, core attention and output head in BF16, communication in bf16, micro-batch 1, DeepEP dispatch (Megatron-Bridge apply_deepep on Hopper) as hierarchical all-to-all, no EP overlap (the Bridge H100 workload config sets none; the maintainer quotes ~350 TFLOPS with 1F1B all-to-all overlap, yanring/Megatron-MoE-ModelZoo#5, so the run may have had it: the model then gives +85%) [U]',
  },
  {
    id: 'dsv3-h800x2048-fp8', model: dsv3, gatedMlp: true, device: 'h800-sxm', layout: L(1, 16, 1, 64, 128, 1, 15360, 4096), dtype: 'fp8', fp8Recipe: 'block',
    schedule: 'dualpipe', recompute: 'selective', recomputeModules: ['norm', 'mla-up-proj', 'activation', 'moe-act'], distributedOptimizer: true,
    imbalance: 1.05, adaptivePipeOverlap: true, hierarchicalA2A: true, bf16AdamMoments: true, fp8SwigluInputs: true,
    tokensPerSecond: 1543 * 2048, goodput: GOODPUT_WHOLE_RUN, group: 'gpu', role: 'holdout',
    source: 'DeepSeek-V3 report (arXiv 2412.19437): 180K H800 GPU-hours per trillion tokens = 1,543 tok/s/GPU; PP16 EP64 ZeRO-1, DualPipe, seq 4096, GBS 15360',
    assumptions: 'DualPipe overlap modelled as adaptive pipe overlap (20 of 132 SMs for communication), IB→NVLink forwarding as hierarchical all-to-all, 2 parameter copies, BF16 Adam moments and FP8-cached SwiGLU inputs (report §3.2.3, §3.3), micro-batch 1, ρ = 1.05 [U]',
  },
];
