// The analytical cost model: iteration time, per-device memory and MFU of a model × parallel
// layout × device spec × options. Op costs come from src/device/cost.ts (the same functions the
// executed simulated cluster uses), composed per layer, per micro-batch, per pipeline schedule:
//
//   T_iter = m·(F + B) + bubble(schedule, F, B, W) + exposed DP comm + optimizer step + swap
//   F, B   = per-stage forward / backward time of one micro-batch on the heaviest stage,
//            compute + exposed TP / EP / CP / PP communication (+ recompute in B)
//
// Overlap rules: TP collectives are exposed except `tpCommOverlap`; EP all-to-all is exposed unless
// adaptive pipe overlap hides it behind the paired micro-batch (100% in steady state, 50% in
// warm-up/cool-down, never more than the compute available); DP reduce-scatter / all-gather hide
// behind one micro-batch's backward / forward plus half the bubble, the last bucket always shows.
import {
  allGatherTime, allReduceTime, allToAllVTime, gemmEfficiency, smoothCurveEfficiency, hostCopyTime, hostSyncTime, kernelFixedTime, memoryTime,
  peakFlops, reduceScatterTime, sendRecvTime, twoTierAllToAllTime,
} from '../device/cost.ts';
import type { DeviceSpec, LinkSpec } from '../device/specs.ts';
import { bwdKernels, fwdKernels, layerKernels, recomputeKernels, type LayerKernels } from './kernels.ts';
import { memoryBreakdown, recomputeSet } from './memory.ts';
import type { ModelCost } from './model-cost.ts';
import { bubbleTime, defaultSchedule, stageSplit } from './schedule.ts';
import { layoutSplit, parseLayout } from './pp-layout.ts';
import type { ParallelLayout, SimOptions, SimResult, TimeBreakdown } from './types.ts';

const BETA = 2; // bf16 activations on the wire
/**
 * Share of a GPU's SMs that EP communication kernels occupy while overlapped with compute: DeepSeek-V3
 * dedicates 20 of the H800's 132 SMs to all-to-all (arXiv 2412.19437 §3.2.2), so overlapped compute runs
 * at 112/132 speed. Ascend: no published figure (HCCL all-to-all on 910B is not documented to take AI
 * cores); 0.
 */
export const GPU_COMM_SM_SHARE = 20 / 132;
/** Bytes of HBM traffic per GEMM-input element to quantise it to FP8 (read bf16, write fp8 + a transposed fp8 copy). */
export const FP8_QUANT_BYTES = 4;

const scaledLinks = new WeakMap<LinkSpec, Map<number, LinkSpec>>();
/** `link` with its efficiency multiplied by `s` (cached: no allocation in the search loop). */
function scaled(link: LinkSpec, s: number): LinkSpec {
  if (s === 1) return link;
  let m = scaledLinks.get(link);
  if (!m) scaledLinks.set(link, (m = new Map()));
  let r = m.get(s);
  if (!r) m.set(s, (r = { ...link, efficiency: Math.min(1, link.efficiency * s) }));
  return r;
}

/**
 * HBM bytes per (locally stepped) parameter of Megatron's mixed-precision optimizer step
 * (megatron/core/optimizer/optimizer.py `MixedPrecisionOptimizer.step`): the gradient norm for clipping reads the
 * fp32 main grad (4 B); fused Adam reads param, grad and both moments and writes param and moments (16 + 12 B; 8 + 8
 * with BF16 moments); the copy of the fp32 main params to the bf16/fp16 model params reads 4 and writes 2 B. FP16
 * adds the loss-scaler pass that unscales the grads and checks them for inf/NaN (read + write 4 B each).
 */
export function optimizerStepBytes(o: Pick<SimOptions, 'dtype' | 'bf16AdamMoments'>): number {
  const m = o.bf16AdamMoments ? 2 : 4;
  const adam = (4 + 4 + m + m) + (4 + m + m); // read p, g, m, v; write p, m, v
  return 4 + adam + 6 + (o.dtype === 'fp16' ? 8 : 0);
}

interface LayerTimes { compute: number; tp: number; ep: number; cp: number; recompute: number; swap: number; epRaw: number; fixed: number }

const kernelCache = new WeakMap<object, LayerKernels>();
const kernelsOf = (cfg: ModelCost['cfg']): LayerKernels => {
  let lk = kernelCache.get(cfg);
  if (!lk) kernelCache.set(cfg, (lk = layerKernels(cfg)));
  return lk;
};

const layoutSplits = new Map<string, { per: number; last: number }>();
/** The {per, last} split of a pipeline layout string (validated by plan.ts; invalid ones throw here). */
function splitOfLayout(layout: string, decoder: number, mtp: number, pp: number, vpp: number): { per: number; last: number } {
  const key = `${layout}|${decoder}|${mtp}|${pp}|${vpp}`;
  let s = layoutSplits.get(key);
  if (!s) {
    const { chunks, problems } = parseLayout(layout, decoder, mtp, pp, vpp);
    if (problems.length) throw new Error(`invalid pipeline layout:\n  - ${problems.join('\n  - ')}`);
    layoutSplits.set(key, (s = layoutSplit(chunks, pp)));
  }
  return s;
}

/** Simulate one training iteration. Does not validate the layout (see layout.ts). */
export function simulate(mc: ModelCost, l: ParallelLayout, o: SimOptions, spec: DeviceSpec): SimResult {
  const cfg = mc.cfg, f = mc.f, h = cfg.hiddenSize, moe = cfg.moe, cal = o.calibration;
  const schedule = o.schedule ?? defaultSchedule(l.pp, l.vpp);
  const devices = l.tp * l.cp * l.pp * l.dp;
  const m = l.globalBatch / (l.dp * l.microBatch);
  const peak = peakFlops(spec, o.dtype);
  // FP8 runs: the linear layers run FP8 GEMMs; core attention, router and output head stay in BF16
  // (Transformer Engine / Megatron keep them in higher precision; DeepSeek-V3 §3.3.1)
  const fp8 = o.dtype === 'fp8';
  const peak16 = fp8 ? peakFlops(spec, 'bf16') : peak;
  const dpn = spec.devicesPerNode;
  const gemmAt = (pk: number, flops: number, mm: number, nn: number, kk: number, scale = cal.gemmScale) =>
    flops <= 0 ? 0 : flops / (pk * Math.min(0.98, gemmEfficiency(mm, Math.max(1, nn), kk, spec) * scale));
  // GEMM efficiency in the run's dtype (the roofline bound depends on bytes per element and the peak)
  // FP8 GEMMs: the BF16 efficiency at the same shape; with block scaling capped by the measured FP8 ceiling
  // (specs.ts `fp8Gemm`: DeepGEMM at DeepSeek-V3's shapes)
  const fp8Cap = fp8 && o.fp8Recipe === 'block' ? spec.efficiency.fp8Gemm ?? 1 : 1;
  const gemm = (flops: number, mm: number, nn: number, kk: number) =>
    flops <= 0 ? 0 : flops / (peak * Math.min(0.98, fp8Cap, gemmEfficiency(mm, Math.max(1, nn), kk, spec, o.dtype) * cal.gemmScale));
  // core attention: a fused (flash) kernel runs at its measured efficiency (specs.ts `attention`), otherwise
  // (unfused batched GEMMs, or no published figure) at the GEMM curve
  const attnEff = o.flashAttention ? spec.efficiency.attention : undefined;
  const small = (flops: number) => flops <= 0 ? 0 : flops / (peak16 * Math.min(0.98, smoothCurveEfficiency(spec.efficiency.gemm, flops / 1e9) * cal.gemmScale));
  const core = (flops: number) => attnEff === undefined ? small(flops) : flops <= 0 ? 0 : flops / (peak16 * attnEff);
  const mem = (bytes: number) => bytes > 0 ? memoryTime(bytes, spec) - spec.efficiency.launchOverhead : 0;
  // FP8 quantisation of GEMM inputs (counted in the forward, so ×3 over fwd + dgrad + wgrad covers the
  // activation casts of the forward and the gradient casts of the backward)
  const q8 = (elements: number) => fp8 ? mem(FP8_QUANT_BYTES * elements) : 0;
  // fixed per-kernel costs (kernels.ts). 'executor': the executed cluster's refined kernels, `launch(n)` for n
  // forward kernels (three launches each over forward, dgrad, wgrad); 'kernels': the layer structure's kernels
  const fixedMode = o.fixedCosts ?? 'kernels';
  const lo = spec.efficiency.launchOverhead;
  const launch = (kernels: number) => fixedMode === 'executor' ? kernels * lo : 0;
  const lk = fixedMode === 'kernels' ? kernelsOf(cfg) : null;

  // --- tokens per rank -------------------------------------------------------------------------
  const T = (l.microBatch * l.seqLen) / l.cp;  // tokens per TP group
  const tl = T / l.tp;                        // tokens per rank (sequence parallel)
  const rho = o.imbalance;
  const mods = recomputeSet(o);
  const rc = (x: 'core-attn' | 'mla-up-proj' | 'norm' | 'activation' | 'moe-act' | 'permute') => mods !== null && mods.has(x);

  // --- compute per layer, forward, one micro-batch ---------------------------------------------
  const attnLin = gemm(T * f.attnLinear / l.tp, T, f.attnLinear / (2 * h) / l.tp, h);
  const attnCore = core(T * f.attnCore / l.tp);
  const normBytes = BETA * h * tl * (cfg.norm === 'sandwich' ? 8 : 4);
  const attnMem = mem(normBytes + BETA * tl * 4 * h);          // norms, residual, RoPE
  // unfused attention writes and re-reads scores, softmax and dropout mask: ~10 bytes per score
  const scores = o.flashAttention ? 0 : (l.microBatch * cfg.numHeads * l.seqLen * l.seqLen) / (l.tp * l.cp * l.cp);
  const attnCoreMem = mem(10 * scores);
  const vDim = cfg.attention === 'mla' && cfg.mla ? cfg.numHeads * cfg.mla.vHeadDim : cfg.numHeads * cfg.headDim;
  const attnFwd = attnLin + attnCore + attnCoreMem + attnMem + q8(T * (h + vDim / l.tp))
    + launch((cfg.attention === 'mla' ? 5 : 2) + 1 + 1 + (o.flashAttention ? 0 : 1));
  const fd = cfg.denseIntermediateSize;
  const denseFwd = gemm(T * f.denseMlp / l.tp, T, (3 * fd) / l.tp, h) + mem(normBytes + BETA * tl * 3 * fd) + q8(T * (h + fd / l.tp)) + launch(3);
  const E = moe.numExperts, k = moe.topk, fe = moe.expertHiddenSize;
  const copies = tl * k * rho;                                  // routed copies on the hottest rank
  const tokPerExpert = Math.max(1, (l.ep * tl * k) / E);
  const expertFwd = mc.hasMoE ? gemm(copies * f.expertPerCopy, tokPerExpert, 3 * fe, h)
    + gemm(T * f.sharedExpert / l.tp, T, (3 * fe * moe.numSharedExperts) / l.tp, h)
    + small(T * f.router / l.tp) + mem(normBytes + BETA * copies * (4 * h + 3 * fe))
    + q8(copies * (h + fe) + T * (h + fe * moe.numSharedExperts / l.tp))
    + launch(2 + 1 + 1 + (moe.numSharedExperts > 0 ? 2 : 0)) : 0;

  // --- TP (sequence parallel): 2 all-gathers + 2 reduce-scatters of T·h per layer, each direction --
  const S = T * h * BETA;
  const tpLayer = l.tp > 1 ? (1 - o.tpCommOverlap) * 2 * (allGatherTime(S, l.tp, spec.intraNode) + reduceScatterTime(S, l.tp, spec.intraNode)) : 0;

  // --- EP all-to-all: dispatch + combine per direction ------------------------------------------
  let epFwd = 0;
  if (mc.hasMoE && l.ep > 1) {
    const rpn = Math.min(l.ep, dpn), nodes = Math.ceil(l.ep / rpn);
    const intra = scaled(spec.intraNode, cal.a2aScale), inter = scaled(spec.interNode, cal.a2aScale);
    const sent = copies * h * BETA;
    if (o.hierarchicalA2A && nodes > 1) {
      // the fitted a2aScale describes the collective library's all-to-all (NCCL / HCCL). Node-deduplicated
      // dispatch runs DeepEP-style kernels whose published bandwidth is the link's (DeepEP README, H800:
      // 50-51 GB/s RDMA at EP64 on ~50 GB/s NICs, 153-158 GB/s NVLink), so those use the catalogue links.
      const dedup = o.hierarchicalMode !== 'allgather';
      const interH = dedup ? spec.interNode : inter, intraH = dedup ? spec.intraNode : intra;
      let phase1: number, phase2: number;
      if (o.hierarchicalMode === 'allgather') {
        // MindSpeed (needs --moe-tp-extend-ep): the outer group of ep/tp ranks (one per TP group) all-gathers
        // every local token, independent of routing; the members on other nodes cross the inter-node link.
        // Then an all-to-allv inside the TP group hands each routed copy to its owner.
        const outer = Math.max(1, Math.round(l.ep / l.tp)), local = Math.max(1, Math.min(outer, Math.floor(dpn / l.tp)));
        phase1 = allToAllVTime(tl * h * BETA * (outer - local), outer, interH);
        phase2 = allToAllVTime(sent * (l.tp - 1) / l.tp, l.tp, intraH)
          + (local > 1 ? allToAllVTime(tl * h * BETA * (local - 1), local, intraH) : 0);
      } else {
        // node-deduplicated: each token crosses to each remote node holding one of its experts once
        // (not once per expert): E[distinct nodes] = N·(1 − (1 − 1/N)^k), capped by group-limited routing
        let distinct = nodes * (1 - Math.pow(1 - 1 / nodes, k));
        if (moe.groupTopk !== null && moe.numGroups !== null && moe.numGroups % nodes === 0) distinct = Math.min(distinct, moe.groupTopk);
        const interBytes = tl * rho * h * BETA * distinct * (nodes - 1) / nodes;
        phase1 = allToAllVTime(interBytes, nodes, interH);
        phase2 = allToAllVTime(sent * (rpn - 1) / rpn, rpn, intraH);  // intra-node all-to-allv to owners
      }
      epFwd = 2 * (o.adaptivePipeOverlap ? Math.max(phase1, phase2) : phase1 + phase2);
    } else {
      epFwd = 2 * twoTierAllToAllTime({
        maxIntraBytes: sent * (rpn - 1) / l.ep, maxInterBytes: sent * (l.ep - rpn) / l.ep, ranksPerNode: rpn, nodes,
      }, intra, inter);
    }
    if (o.epMetadata) {
      // tokens-per-expert all-gather (forward) and the routing probabilities' all-to-all (forward and
      // backward, so half of it in each direction's epFwd): per routed copy one BETA-byte value
      const probs = copies * BETA;
      const probsA2A = twoTierAllToAllTime({
        maxIntraBytes: probs * (rpn - 1) / l.ep, maxInterBytes: probs * (l.ep - rpn) / l.ep, ranksPerNode: rpn, nodes,
      }, intra, inter);
      epFwd += probsA2A + allGatherTime(l.ep * E * BETA, l.ep, nodes > 1 ? spec.interNode : spec.intraNode) / 2;
    }
  }

  // --- CP ring attention: (cp−1) KV exchanges, overlapped with the core attention ---------------
  let cpFwd = 0;
  if (l.cp > 1) {
    const kvDim = cfg.attention === 'mla' ? cfg.numHeads * (cfg.mla!.qkNopeHeadDim + cfg.mla!.qkRopeHeadDim + cfg.mla!.vHeadDim)
      : 2 * cfg.numKvHeads * cfg.headDim;
    const link = l.tp * l.cp <= dpn ? spec.intraNode : spec.interNode;
    cpFwd = (l.cp - 1) * sendRecvTime(T * kvDim * BETA / l.tp, link);
  }

  // --- per-layer composition (forward + backward of one micro-batch) -----------------------------
  const moeShare = mc.hasMoE ? mc.moeLayers / mc.layers : 0;
  const pf = (p: number) => Math.max(1, p); // avoid div by zero in fractions
  // micro-batches without a partner to overlap with: the pipeline warm-up/cool-down, and at least the
  // first forward and the last backward of the step
  const fNonSteady = o.adaptivePipeOverlap ? Math.min(1, Math.max(1, l.pp - 1) / pf(m)) : 1;
  const hidden = o.adaptivePipeOverlap ? (1 - fNonSteady) + 0.5 * fNonSteady : 0;
  const layer = (mlpFwd: number, isMoE: boolean): LayerTimes => {
    const compute = 3 * (attnFwd + mlpFwd);           // fwd + dgrad + wgrad
    const epRaw = isMoE ? 2 * epFwd : 0;              // fwd + bwd
    let recompute = 0, epExtra = 0;
    if (o.recompute === 'full') {
      recompute = attnFwd + mlpFwd + tpLayer + epRaw / 2 + Math.max(0, cpFwd - attnCore);
    } else if (mods) {
      if (rc('core-attn')) recompute += attnCore + attnCoreMem;
      if (rc('mla-up-proj') && cfg.attention === 'mla' && cfg.mla) {
        const mm = cfg.mla, dqk = mm.qkNopeHeadDim + mm.qkRopeHeadDim;
        const fl = 2 * T * ((mm.qLoraRank ?? h) * cfg.numHeads * dqk + mm.kvLoraRank * cfg.numHeads * (mm.qkNopeHeadDim + mm.vHeadDim)) / l.tp;
        recompute += gemm(fl, T, cfg.numHeads * dqk / l.tp, mm.qLoraRank ?? h);
      }
      if (rc('norm')) recompute += mem(normBytes);
      if (rc('activation')) recompute += mem(BETA * tl * (isMoE ? 3 * fe * moe.numSharedExperts : 3 * fd));
      if (isMoE && rc('moe-act')) recompute += mem(BETA * copies * 3 * fe);
      if (isMoE && rc('permute')) { recompute += mem(BETA * copies * 2 * h); epExtra = epFwd / 2; } // re-dispatch
    }
    const epAll = epRaw + epExtra;
    const ep = o.adaptivePipeOverlap ? Math.max(epAll * (1 - hidden), epAll - (compute + recompute)) : epAll;
    // GPUs: while a paired micro-batch's communication runs, its kernels hold GPU_COMM_SM_SHARE of the SMs for
    // the whole overlapped chunk, so the overlapped (steady-state) compute runs on the rest
    const smSlow = o.adaptivePipeOverlap && isMoE && epAll > 0 && !spec.name.startsWith('ascend')
      ? hidden * compute * GPU_COMM_SM_SHARE / (1 - GPU_COMM_SM_SHARE) : 0;
    const cp = 3 * Math.max(0, cpFwd - attnCore);
    // fixed kernel costs (cost.ts kernelFixedTime): every kernel of the layer (forward, backward, recompute) pays
    // the launch cost on the device; the host dispatches the same kernels asynchronously, so the layer is host-bound
    // only when dispatching them takes longer than the device needs; plus the MoE dispatcher's host syncs
    let fixed = 0;
    if (lk) {
      const mk = isMoE ? lk.moe : lk.dense;
      const n = fwdKernels(lk.attn) + fwdKernels(mk) + bwdKernels(lk.attn) + bwdKernels(mk)
        + recomputeKernels(cfg, o.recompute === 'full', mods, isMoE);
      fixed = kernelFixedTime(n, compute + recompute, spec) + (isMoE ? lk.moeHostSyncs * hostSyncTime(spec) : 0);
    }
    let swap = 0;
    if (o.swapAttention) {
      const bytes = (tl * (mc.actAttn.swappable)) / 1; // per rank, this layer, one micro-batch
      const t = hostCopyTime(bytes, spec);
      swap = Math.max(0, t - (attnFwd + mlpFwd)) + Math.max(0, t - 2 * (attnFwd + mlpFwd));
    }
    return { compute: compute + smSlow + cal.layerOverhead, tp: 2 * tpLayer, ep, cp, recompute, swap, epRaw: epAll, fixed };
  };
  const Lmoe = layer(expertFwd, true), Ldense = layer(denseFwd, false);
  const avg = (key: keyof LayerTimes) => moeShare * Lmoe[key] + (1 - moeShare) * Ldense[key];

  // heaviest stage: padded layer count, or the last stage's layers plus the output head
  const n = mc.layers;
  const headFwd = gemmAt(peak16, T * f.logits / l.tp, T, cfg.vocabSize / l.tp, h, cal.headGemmScale ?? cal.gemmScale) + mem(4 * 3 * T * cfg.vocabSize / l.tp) + launch(2)
    + (cfg.numMtpLayers > 0 ? gemm(T * f.mtpExtra * cfg.numMtpLayers / l.tp, T, h / l.tp, 2 * h) : 0);
  const headKernels = lk ? fwdKernels(lk.head) + bwdKernels(lk.head) : 0;
  const headFixed = kernelFixedTime(headKernels, 3 * headFwd * (1 + cfg.numMtpLayers), spec);
  const head = 3 * headFwd * (1 + cfg.numMtpLayers) + headFixed;
  const layerSum = avg('compute') + avg('tp') + avg('ep') + avg('cp') + avg('recompute') + avg('swap') + avg('fixed');
  // stage split balanced on time: the head counts as head/layerSum layers on the last stage
  const paired = schedule === 'dualpipe';
  const split = o.ppLayout ? splitOfLayout(o.ppLayout, cfg.numLayers, cfg.numMtpLayers, l.pp, l.vpp) : stageSplit(n, l.pp, l.vpp, layerSum > 0 ? head / layerSum : 0, paired);
  const per = split.per;
  const lastLayers = split.last;
  // the heaviest rank: a full stage, or the last stage with the head (DualPipe: rank 0 runs the first and the
  // last stage for half of the micro-batches each)
  let cnt: number, headShare: number;
  const tPer = per * layerSum, tLast = lastLayers * layerSum + head;
  if (l.pp === 1) { cnt = per; headShare = 1; }
  else if (paired) { if ((tPer + tLast) / 2 >= tPer) { cnt = (per + lastLayers) / 2; headShare = 0.5; } else { cnt = per; headShare = 0; } }
  else if (tPer >= tLast) { cnt = per; headShare = 0; }
  else { cnt = lastLayers; headShare = 1; }

  // PP p2p: activation (fwd) and its gradient (bwd) per chunk boundary; hidden by adaptive overlap
  const ppLink = l.tp * l.cp * l.dp >= dpn ? spec.interNode : spec.intraNode;
  const ppMb = l.pp > 1 && !o.adaptivePipeOverlap ? 2 * l.vpp * sendRecvTime((T * h * BETA) / l.tp, ppLink) : 0;

  const comp = cnt * avg('compute') + headShare * (head - headFixed);
  const rec = cnt * avg('recompute');
  const fx = cnt * avg('fixed') + headShare * headFixed;
  const tp = cnt * avg('tp'), ep = cnt * avg('ep'), cpT = cnt * avg('cp'), sw = cnt * avg('swap');
  const perMb = comp + rec + tp + ep + cpT + ppMb + sw + fx;
  const Fmb = perMb / 3, Bmb = perMb - Fmb, Wmb = comp / 3;
  const bubble = bubbleTime(schedule, l.pp, l.vpp, Fmb, Bmb, Wmb);

  // --- memory (also gives the sharded parameter counts) -------------------------------------------
  const memory = memoryBreakdown(mc, l, o, spec, schedule, m, split);
  const tpShard = memory.weights / 2; // params on this device (dense TP shard + experts)
  const p = mc.params;
  const expertLocal = (Math.min(per, mc.moeLayers) * p.expertsPerLayer) / l.ep;
  const denseLocal = Math.max(0, tpShard - expertLocal);
  const dpDense = l.dp * l.cp, edp = (l.tp * l.cp * l.dp) / l.ep;
  const dpLinkDense = l.tp * l.cp * l.dp <= dpn ? spec.intraNode : spec.interNode;
  const dpLinkExp = l.tp * l.cp * l.dp <= dpn ? spec.intraNode : spec.interNode;
  const gb = 2; // bf16 grads / params on the wire
  let rs = 0, ag = 0;
  // one collective per bucket: the bytes split evenly over `nb` buckets, each paying the latency term
  const nbD = o.dpBuckets?.dense ?? 1, nbE = o.dpBuckets?.expert ?? 1;
  const bucketed = (fn: (b: number, n: number, link: LinkSpec) => number, bytes: number, n: number, link: LinkSpec, nb: number) =>
    nb <= 1 ? fn(bytes, n, link) : nb * fn(bytes / nb, n, link);
  if (o.distributedOptimizer) {
    rs = bucketed(reduceScatterTime, denseLocal * gb, dpDense, dpLinkDense, nbD) + bucketed(reduceScatterTime, expertLocal * gb, edp, dpLinkExp, nbE);
    ag = bucketed(allGatherTime, denseLocal * gb, dpDense, dpLinkDense, nbD) + bucketed(allGatherTime, expertLocal * gb, edp, dpLinkExp, nbE);
  } else {
    rs = bucketed(allReduceTime, denseLocal * gb, dpDense, dpLinkDense, nbD) + bucketed(allReduceTime, expertLocal * gb, edp, dpLinkExp, nbE);
  }
  const dpComm = o.dpOverlap
    ? Math.max(rs / pf(cnt), rs - Bmb - bubble / 2) + Math.max(ag / pf(cnt), ag - Fmb - bubble / 2)
    : rs + ag;
  const optParams = o.distributedOptimizer ? denseLocal / dpDense + expertLocal / edp : tpShard;
  const optimizer = mem(optParams * optimizerStepBytes(o));
  const swapOpt = o.swapOptimizer ? hostCopyTime(24 * optParams, spec) : 0;

  const time: TimeBreakdown = {
    compute: m * comp, recompute: m * rec, tpComm: m * tp, epComm: m * ep, cpComm: m * cpT, ppComm: m * ppMb,
    dpComm, bubble, optimizer, swap: m * sw + swapOpt, overhead: m * fx, total: 0,
  };
  time.total = time.compute + time.recompute + time.tpComm + time.epComm + time.cpComm + time.ppComm + time.dpComm
    + time.bubble + time.optimizer + time.swap + time.overhead;

  const tokens = l.globalBatch * l.seqLen;
  const flopsIter = mc.flopsPerToken * tokens;
  const mfuPeak = peakFlops(spec, o.mfuDtype ?? o.dtype);
  const mfu = flopsIter / (time.total * devices * mfuPeak);
  return {
    layout: l, devices,
    stepTimeSeconds: time.total,
    tokensPerSecond: tokens / time.total,
    mfu,
    hfu: mfu * (1 + (time.recompute / Math.max(1e-30, time.compute))),
    modelFlopsPerIteration: flopsIter,
    flopsPerToken: mc.flopsPerToken,
    microBatches: m,
    bubbleFraction: bubble / Math.max(1e-30, m * perMb),
    time, memory, peakMemoryBytes: memory.total,
    stages: { perStage: per, lastStage: lastLayers, headLayerEquivalents: layerSum > 0 ? head / layerSum : 0 },
  };
}
