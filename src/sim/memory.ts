// Per-device memory of the most loaded pipeline stage (perf-model.md §2.3-2.4): weights, fp32
// main grads, Adam states (sharded over DP / expert-DP by the distributed optimizer), stored
// activations for the schedule's in-flight micro-batches, MoE activations scaled by the
// expert-load imbalance ρ, minus what recomputation drops and what swapping parks on the host.
import type { DeviceSpec } from '../device/specs.ts';
import { keptBytes, type ModelCost } from './model-cost.ts';
import { inFlightMicroBatches, paramCopies, stageSplit } from './schedule.ts';
import type { MemoryBreakdown, ParallelLayout, RecomputeModule, Schedule, SimOptions } from './types.ts';

/** Collective buffers, workspaces and allocator fragmentation on GPUs (assumed, see docs/simulator.md). */
export const RESERVED_BYTES = 2 * 2 ** 30;

/**
 * Device memory the training process cannot use. GPUs: RESERVED_BYTES [U]. Ascend: the MindSpore /
 * MindFormers guides recommend `max_device_memory: 58GB` on a 64 GB 910B and "typically 54GB on a
 * thousand-card cluster" (HCCL buffers and other components grow with the cluster), so the reserve is
 * the rest of the HBM.
 */
export function reservedBytes(spec: DeviceSpec, devices: number): number {
  if (!spec.name.startsWith('ascend')) return RESERVED_BYTES;
  const usable = (devices >= 1000 ? 54 : 58) * 2 ** 30;
  return Math.max(RESERVED_BYTES, spec.hbmBytes - usable);
}
/** Layers of swapped activations resident around the one being computed (prefetch window). */
const SWAP_WINDOW_LAYERS = 2;

/** The recompute modules in effect (null = none dropped; 'full' handled separately). */
export function recomputeSet(o: SimOptions): ReadonlySet<RecomputeModule> | null {
  return o.recompute === 'selective' ? new Set(o.recomputeModules) : null;
}

/** Stored activation bytes per token per layer, averaged over the stage's layer mix, on one device. */
export function activationBytesPerToken(mc: ModelCost, l: ParallelLayout, o: SimOptions, mods: ReadonlySet<RecomputeModule> | null,
  moeShare: number): { resident: number; swapped: number } {
  const shard = l.tp * l.cp;
  if (o.recompute === 'full') return { resident: mc.actLayerInput / shard, swapped: 0 };
  const fp8 = o.dtype === 'fp8';
  const attn = keptBytes(mc.actAttn, mods, fp8);
  const dense = keptBytes(mc.actDenseMlp, mods, fp8);
  // FP8-cached SwiGLU inputs: the fc1 outputs (2·f per token, bf16) take 1 byte per element
  const sw8 = o.fp8SwigluInputs ? 1 : 0, fe = mc.cfg.moe.expertHiddenSize;
  const moe = keptBytes(mc.actMoeShared, mods, fp8) - sw8 * fe * mc.cfg.moe.numSharedExperts * (mc.gatedMlp ? 2 : 1)
    + mc.cfg.moe.topk * o.imbalance * (keptBytes(mc.actExpertCopy, mods, fp8) - sw8 * fe * (mc.gatedMlp ? 2 : 1));
  const mlp = moeShare * moe + (1 - moeShare) * dense;
  const swapped = o.swapAttention ? Math.min(attn, mc.actAttn.swappable) : 0;
  return { resident: (attn - swapped + mlp) / shard, swapped: swapped / shard };
}

/**
 * `split`: layers on the first and the last stage (simulate() passes the time-balanced split); by default
 * the FLOPs-balanced one, the head counted double under FP8 since it runs in BF16.
 */
export function memoryBreakdown(mc: ModelCost, l: ParallelLayout, o: SimOptions, spec: DeviceSpec, schedule: Schedule,
  microBatches: number, split?: { per: number; last: number }): MemoryBreakdown {
  const p = mc.params;
  const n = mc.layers;
  // no-op padding, with the last stage lightened for the output head (schedule.ts stageSplit)
  const st = split ?? stageSplit(n, l.pp, l.vpp, mc.headLayers * (o.dtype === 'fp8' ? 2 : 1), schedule === 'dualpipe');
  const perStage = st.per, lastStage = st.last;
  // first stage: the dense layers come first; last stage: MoE layers + output head + MTP extras
  const firstDense = Math.min(mc.denseLayers, perStage);
  const firstMoE = perStage - firstDense;
  const lastMoE = mc.hasMoE ? Math.min(lastStage, mc.moeLayers) : 0;
  const lastDense = lastStage - lastMoE;
  const dpDense = l.dp * l.cp;
  const edp = (l.tp * l.cp * l.dp) / l.ep;
  const stageParams = (dense: number, moe: number, extraTp: number) => ({
    tpShard: ((dense + moe) * p.attnLayer + dense * p.denseMlp + moe * p.moeShared + extraTp) / l.tp,
    expert: (moe * p.expertsPerLayer) / l.ep,
  });
  let first = stageParams(firstDense, firstMoE, p.embedding + (l.pp === 1 ? p.output + p.mtpExtra : 0));
  let last = l.pp === 1 ? first : stageParams(lastDense, lastMoE, p.output + p.mtpExtra);
  if (paramCopies(schedule) === 2 && l.pp > 1) {
    // DualPipe: rank i holds stage i of one direction and stage p−1−i of the other (2× parameters,
    // DeepSeek-V3 report Table 2); rank 0 holds the first and the last stage, embedding and head
    const both = { tpShard: first.tpShard + last.tpShard, expert: first.expert + last.expert };
    first = both; last = both;
  }
  const ob = o.bf16AdamMoments ? 8 : 12; // fp32 master + Adam m, v (fp32 or bf16)
  const optBytes = (dense: number, expert: number) => o.swapOptimizer ? 0
    : o.distributedOptimizer ? ob * (dense / dpDense + expert / edp) : ob * (dense + expert);
  const wg = (s: { tpShard: number; expert: number }) => s.tpShard + s.expert;

  const moeShare = mc.hasMoE ? mc.moeLayers / n : 0;
  const mods = recomputeSet(o);
  const act = activationBytesPerToken(mc, l, o, mods, moeShare);
  const tokensPerMb = l.microBatch * l.seqLen;
  const inflight = inFlightMicroBatches(schedule, l.pp, l.vpp, microBatches, o.adaptivePipeOverlap ? 1 : 0);
  const layerAct = act.resident * tokensPerMb;
  // full recompute re-materialises one layer's activations at a time during backward
  const workingLayer = o.recompute === 'full'
    ? activationBytesPerToken(mc, l, { ...o, recompute: 'none' }, null, moeShare).resident * tokensPerMb : 0;
  const swapWindow = act.swapped * tokensPerMb * SWAP_WINDOW_LAYERS;
  const firstAct = perStage * inflight * layerAct + workingLayer + swapWindow;
  // last stage: one micro-batch in flight per chunk, plus fp32 logits and their gradient
  const logits = (2 * 4 * tokensPerMb * mc.cfg.vocabSize) / (l.tp * l.cp);
  const lastAct = lastStage * Math.min(l.vpp, microBatches) * layerAct + workingLayer + swapWindow + logits;

  const firstTotal = 6 * wg(first) + optBytes(first.tpShard, first.expert) + firstAct;
  const lastTotal = 6 * wg(last) + optBytes(last.tpShard, last.expert) + lastAct;
  const s = firstTotal >= lastTotal ? first : last;
  const activations = firstTotal >= lastTotal ? firstAct : lastAct;
  const weights = 2 * wg(s), gradients = 4 * wg(s), optimizer = optBytes(s.tpShard, s.expert);
  const reserved = reservedBytes(spec, l.tp * l.cp * l.pp * l.dp);
  const total = weights + gradients + optimizer + activations + reserved;
  const hostSwap = act.swapped * tokensPerMb * perStage * inflight
    + (o.swapOptimizer ? 12 * (o.distributedOptimizer ? s.tpShard / dpDense + s.expert / edp : wg(s)) : 0);
  return { weights, gradients, optimizer, activations, reserved, total, hostSwap, capacity: spec.hbmBytes, fits: total <= spec.hbmBytes };
}
