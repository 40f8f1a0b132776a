// Kernels and messages per layer: the fixed-cost side of the cost model.
//
// Every kernel pays a fixed cost on the device timeline (`spec.efficiency.launchOverhead`: launch, task
// scheduling, pipeline ramp), whatever its size, and is dispatched by the host in `spec.efficiency.hostDispatch`
// (asynchronously: it only shows when the host falls behind the device, "host bound"). Every collective pays
// its per-peer latency alpha in src/device/cost.ts. At a fixed parameter count a deeper, narrower model runs
// more kernels and sends more (smaller) messages per token: "hidden size sets bytes per message, layer count
// sets message count" (Pangu Pro MoE §2.3, pangu-ultra-moe.md §4).
//
// The counts below are the kernels one Megatron-core / MindSpeed transformer layer launches with the usual
// fusions on (fused RMSNorm, fused RoPE, flash attention, fused SwiGLU, grouped GEMM, fused permute/unpermute;
// MindSpeed `--use-fused-rmsnorm --use-fused-rotary-pos-emb --use-flash-attn --use-fused-swiglu
// --moe-grouped-gemm --moe-permute-fusion`), per micro-batch, forward:
//   attention, MLA with q-LoRA: input norm, q-down GEMM, q norm, q-up GEMM, kv-down GEMM, kv norm, kv-up GEMM,
//     RoPE q, RoPE k, concat q, concat k, flash attention, output GEMM, residual add   (5 GEMM, 8 other, 1 core)
//     (without q-LoRA: one q GEMM, one norm fewer); GQA: norm, QKV GEMM, RoPE q, RoPE k, flash attention,
//     output GEMM, residual add (2 GEMM, 4 other, 1 core)
//   dense MLP: norm, fc1 GEMM, SwiGLU, fc2 GEMM, residual add (2 GEMM, 3 other)
//   MoE: norm, router GEMM, score function, top-k, probability normalisation, tokens-per-expert histogram,
//     permute, sort-chunks-by-expert, grouped fc1, SwiGLU, grouped fc2, sort-chunks back, unpermute (with
//     the probabilities), [shared expert fc1, SwiGLU, fc2, add], residual add (3 + 2 GEMM, 13 + 2 other)
//   head: final norm, output GEMM, vocab-parallel cross-entropy (max, exp-sum, loss: 3) (1 GEMM, 4 other);
//     each MTP module adds two norms, a concat, its projection GEMM and its own head.
// Backward: two kernels per GEMM (dgrad, wgrad), one per other kernel (fused backward), one for flash
// attention. Collective launches are not counted here: their fixed cost is the alpha term of each collective.
import type { ModelConfig } from '../model/config.ts';
import type { RecomputeModule } from './types.ts';

export interface KernelCount {
  /** GEMMs (forward); each has a dgrad and a wgrad kernel in the backward */
  gemm: number;
  /** element-wise / normalisation / routing / permutation kernels (one backward kernel each) */
  other: number;
  /** fused attention kernels (one backward kernel each) */
  core: number;
}

export interface LayerKernels {
  attn: KernelCount;
  dense: KernelCount;
  moe: KernelCount;
  /** main output head plus every MTP module */
  head: KernelCount;
  /**
   * Host-device synchronisations per MoE layer and micro-batch: the all-to-all dispatcher copies the tokens per
   * expert to the host for the all-to-allv splits in the forward (Megatron-core MoEAlltoAllTokenDispatcher
   * `maybe_move_tensor_to_cpu` / its sync point; the backward reuses the splits). Megatron's inference dispatcher
   * keeps them on the device precisely to avoid this host synchronisation.
   */
  moeHostSyncs: number;
}

const k = (gemm: number, other: number, core = 0): KernelCount => ({ gemm, other, core });

/** Kernels per forward of one layer (and of the heads) of `cfg`, as counted above. */
export function layerKernels(cfg: ModelConfig): LayerKernels {
  const mla = cfg.attention === 'mla' && cfg.mla;
  const qLora = mla && cfg.mla!.qLoraRank !== null && cfg.mla!.qLoraRank !== undefined;
  const attn = mla ? (qLora ? k(5, 8, 1) : k(4, 7, 1)) : k(2, 4, 1);
  const shared = cfg.moe.numSharedExperts > 0;
  const moe = k(3 + (shared ? 2 : 0), 13 + (shared ? 2 : 0));
  const head1 = k(1, 4);
  const mtp = cfg.numMtpLayers;
  const head = k(head1.gemm * (1 + mtp) + mtp, head1.other * (1 + mtp) + 3 * mtp);
  return { attn, dense: k(2, 3), moe, head, moeHostSyncs: 1 };
}

/** Kernels of a forward (`fwd`) and of the matching backward (`bwd`). */
export const fwdKernels = (c: KernelCount): number => c.gemm + c.other + c.core;
export const bwdKernels = (c: KernelCount): number => 2 * c.gemm + c.other + c.core;

/**
 * Kernels re-run in the backward by recomputation, per layer: 'full' re-runs the whole forward; the
 * fine-grained modules re-run their own kernels (core-attn: flash attention; mla-up-proj: q-up and kv-up
 * GEMMs, RoPE and concats; norm: every norm of the layer; activation: the SwiGLU(s); moe-act: the expert SwiGLU;
 * permute: permute and sort-chunks).
 */
export function recomputeKernels(cfg: ModelConfig, full: boolean, mods: ReadonlySet<RecomputeModule> | null, isMoE: boolean): number {
  const lk = layerKernels(cfg);
  const mlp = isMoE ? lk.moe : lk.dense;
  if (full) return fwdKernels(lk.attn) + fwdKernels(mlp);
  if (!mods) return 0;
  const mla = cfg.attention === 'mla' && !!cfg.mla;
  const shared = isMoE && cfg.moe.numSharedExperts > 0;
  let n = 0;
  if (mods.has('core-attn')) n += 1;
  if (mods.has('mla-up-proj') && mla) n += 2 + 4;
  if (mods.has('norm')) n += (mla ? lk.attn.other - 5 : 1) + 1;
  if (mods.has('activation')) n += isMoE ? (shared ? 1 : 0) : 1;
  if (isMoE && mods.has('moe-act')) n += 1;
  if (isMoE && mods.has('permute')) n += 2;
  return n;
}
