// The paper's system (Pangu Ultra MoE, arXiv 2505.04519) as simulator inputs: the baseline
// (18.9% MFU on "4K" NPUs) and the optimised setup (30.0% on "6K"), and the cumulative
// progression between them. Unconfirmed details are assumptions, listed in ASSUMPTIONS and
// docs/simulator.md (pangu-ultra-moe.md §5-7, §12).
import { PRESETS, type ModelConfig } from '../model/config.ts';
import type { ParallelLayout, SimOptions } from './types.ts';
import { DEFAULT_OPTIONS } from './types.ts';
import { CALIBRATIONS } from './calibration.ts';

export const PAPER_MODEL: ModelConfig = PRESETS['pangu-ultra-moe-718b'];
export const PAPER_DEVICE = 'ascend-910b';
export const PAPER_SEQ = 4096;
export const PAPER_GLOBAL_BATCH = 6144;
/** ρ (max/mean tokens per EP rank) before and after dynamic expert placement [U]. */
export const IMBALANCE_STATIC = 1.3;
export const IMBALANCE_PLACED = 1.05;

export const ASSUMPTIONS = [
  'NPU counts: "4K" = 4096 and "6K" = 6144 Ascend 910B (Atlas 800T A2), peak 256 TFLOPS BF16 (Pangu Pro MoE §3.1.2) [U]',
  'MFU numerator: Megatron FLOPs with non-causal attention at seq 4096, MTP counted (308.4 GFLOP/token) [U; perf-model.md §3]',
  'layout: TP8 PP16 VPP2, EP4 with --moe-tp-extend-ep (experts over TP×EP = 32 ranks), micro-batch 2, global batch 6144 sequences [U; third-party note]',
  'baseline: full recomputation, flat all-to-all, no EP overlap, static expert placement (ρ = 1.3) [U]',
  'optimised: hierarchical all-to-all (MindSpeed variant: inter-node all-gather over the ep/tp outer group, all-to-allv inside the TP group), adaptive pipe overlap, fine-grained recompute (MLA up-proj, norm, activations, permute) + attention swap, dynamic placement (ρ = 1.05) [U for which tensors]',
];

export function paperLayout(devices: 4096 | 6144 | number): ParallelLayout {
  return { tp: 8, pp: 16, vpp: 2, ep: 32, cp: 1, dp: devices / (8 * 16), microBatch: 2, globalBatch: PAPER_GLOBAL_BATCH, seqLen: PAPER_SEQ };
}

const base: SimOptions = {
  ...DEFAULT_OPTIONS,
  recompute: 'full',
  recomputeModules: [],
  imbalance: IMBALANCE_STATIC,
  causalFlops: false,
  calibration: CALIBRATIONS.ascend,
};

export const PAPER_BASELINE_OPTIONS: SimOptions = base;
export const PAPER_OPTIMISED_OPTIONS: SimOptions = {
  ...base,
  hierarchicalA2A: true,
  hierarchicalMode: 'allgather',
  adaptivePipeOverlap: true,
  recompute: 'selective',
  recomputeModules: ['mla-up-proj', 'norm', 'activation', 'permute'],
  swapAttention: true,
  imbalance: IMBALANCE_PLACED,
};

export interface ProgressionStep {
  name: string;
  devices: number;
  options: SimOptions;
  /** the paper's reported MFU for this step, where one exists */
  paperMfu?: number;
}

/** Cumulative steps from the baseline to the optimised system. */
export function paperProgression(): ProgressionStep[] {
  const o1 = { ...base };
  const o2 = { ...o1, hierarchicalA2A: true, hierarchicalMode: 'allgather' as const };
  const o3 = { ...o2, adaptivePipeOverlap: true };
  const o4 = { ...o3, recompute: 'selective' as const, recomputeModules: PAPER_OPTIMISED_OPTIONS.recomputeModules, swapAttention: true };
  const o5 = { ...o4, imbalance: IMBALANCE_PLACED };
  return [
    { name: 'baseline (4K NPUs)', devices: 4096, options: base, paperMfu: 0.189 },
    { name: 'scale to 6K NPUs', devices: 6144, options: o1 },
    { name: '+ hierarchical all-to-all', devices: 6144, options: o2 },
    { name: '+ adaptive pipe overlap', devices: 6144, options: o3 },
    { name: '+ fine-grained recompute & swap', devices: 6144, options: o4 },
    { name: '+ dynamic expert placement', devices: 6144, options: o5, paperMfu: 0.300 },
  ];
}
