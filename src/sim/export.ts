// Turn a plan into training arguments for Megatron-LM (megatron/training/arguments.py) or
// MindSpeed-LLM (Ascend/MindSpeed feature flags, pangu-ultra-moe.md §11). Pure: returns the
// argument list plus comments for settings that have no flag in the target framework.
import type { ModelConfig } from '../model/config.ts';
import { simulatePlan, type Plan } from './plan.ts';
import { layoutChunks, megatronLayout, noopLayers, parseLayout } from './pp-layout.ts';
import { defaultSchedule } from './schedule.ts';
import { resolveConfig } from '../model/config.ts';

export type ExportFormat = 'megatron' | 'mindspeed';

export interface ExportResult {
  args: string[];
  notes: string[];
}

function modelArgs(cfg: ModelConfig, seq: number, numLayers = cfg.numLayers): string[] {
  const a = [
    `--num-layers ${numLayers}`, `--hidden-size ${cfg.hiddenSize}`, `--ffn-hidden-size ${cfg.denseIntermediateSize}`,
    `--num-attention-heads ${cfg.numHeads}`, `--seq-length ${seq}`, `--max-position-embeddings ${Math.max(seq, cfg.maxSeqLen)}`,
    '--swiglu', '--normalization RMSNorm', `--norm-epsilon ${cfg.normEps}`, '--position-embedding-type rope',
    `--rotary-base ${cfg.ropeTheta}`, '--disable-bias-linear',
  ];
  if (!cfg.tieEmbeddings) a.push('--untie-embeddings-and-output-weights');
  if (cfg.attention === 'mla' && cfg.mla) {
    const m = cfg.mla;
    a.push('--multi-latent-attention', `--kv-lora-rank ${m.kvLoraRank}`, `--qk-head-dim ${m.qkNopeHeadDim}`,
      `--qk-pos-emb-head-dim ${m.qkRopeHeadDim}`, `--v-head-dim ${m.vHeadDim}`);
    if (m.qLoraRank !== null) a.push(`--q-lora-rank ${m.qLoraRank}`);
  } else if (cfg.numKvHeads !== cfg.numHeads) a.push('--group-query-attention', `--num-query-groups ${cfg.numKvHeads}`);
  const moeLayers = cfg.numLayers - cfg.numDenseLayers;
  if (moeLayers > 0) {
    const moe = cfg.moe;
    a.push(`--num-experts ${moe.numExperts}`, `--moe-router-topk ${moe.topk}`, `--moe-ffn-hidden-size ${moe.expertHiddenSize}`,
      `--moe-layer-freq "[0]*${cfg.numDenseLayers}+[1]*${moeLayers}"`, '--moe-grouped-gemm', '--moe-token-dispatcher-type alltoall',
      `--moe-router-score-function ${moe.scoreFunction}`);
    if (moe.numSharedExperts > 0) a.push(`--moe-shared-expert-intermediate-size ${moe.expertHiddenSize * moe.numSharedExperts}`);
    if (moe.topkScalingFactor !== null) a.push(`--moe-router-topk-scaling-factor ${moe.topkScalingFactor}`);
    if (moe.expertBias) a.push('--moe-router-enable-expert-bias');
    if (moe.numGroups !== null) a.push(`--moe-router-num-groups ${moe.numGroups}`, `--moe-router-group-topk ${moe.groupTopk}`);
    const aux = moe.auxLoss[0];
    if (aux) a.push(`--moe-router-load-balancing-type ${aux.type === 'seq' ? 'seq_aux_loss' : 'aux_loss'}`, `--moe-aux-loss-coeff ${aux.coeff}`);
  }
  if (cfg.numMtpLayers > 0) a.push(`--mtp-num-layers ${cfg.numMtpLayers}`);
  return a;
}

const MEGATRON_MODULES: Record<string, string> = {
  'core-attn': 'core_attn', 'mla-up-proj': 'mla_up_proj', norm: 'layernorm', 'moe-act': 'moe_act', activation: 'mlp',
};

export function exportArgs(plan: Plan, format: ExportFormat): ExportResult {
  const cfg = resolveConfig(plan.model, plan.overrides ?? {});
  const l = plan.layout, o = plan.options;
  const notes: string[] = [];
  const args: string[] = [];
  const extendEp = format === 'mindspeed' && l.tp > 1 && l.ep % l.tp === 0 && l.ep / l.tp >= 1;
  args.push(`--tensor-model-parallel-size ${l.tp}`, `--pipeline-model-parallel-size ${l.pp}`,
    `--expert-model-parallel-size ${extendEp ? l.ep / l.tp : l.ep}`, `--context-parallel-size ${l.cp}`,
    `--micro-batch-size ${l.microBatch}`, `--global-batch-size ${l.globalBatch}`);
  if (l.tp > 1) args.push('--sequence-parallel');
  if (format === 'megatron' && l.ep > 1) args.push('--expert-tensor-parallel-size 1');
  if (extendEp) args.push('--moe-tp-extend-ep');
  let numLayers = cfg.numLayers;
  const schedule = o.schedule ?? defaultSchedule(l.pp, l.vpp);
  if (l.pp > 1 && schedule !== 'dualpipe') {
    // the stage split the simulation assumed (lighter last stage for the output heads), written so the framework
    // builds the same stages: Megatron's custom layout, or MindSpeed's per-chunk padding with no-op layers
    const st = simulatePlan(plan).stages;
    const chunks = o.ppLayout ? parseLayout(o.ppLayout, cfg.numLayers, cfg.numMtpLayers, l.pp, l.vpp).chunks
      : layoutChunks(cfg.numLayers, cfg.numMtpLayers, l.pp, l.vpp, { per: st.perStage, last: st.lastStage });
    const counts = Array.from({ length: l.pp }, (_, p) => chunks.filter((_, c) => c % l.pp === p).reduce((a, c) => a + c.decoder + c.mtp, 0));
    notes.push(`stage split as simulated: ${counts.join(',')} layers per stage (incl. ${cfg.numMtpLayers} MTP), output heads on stage ${l.pp - 1}`);
    const mtpLast = cfg.numMtpLayers === 0 || chunks[chunks.length - 1].mtp === cfg.numMtpLayers;
    if (format === 'megatron') args.push(`--pipeline-model-parallel-layout "${o.ppLayout ?? megatronLayout(chunks)}"`);
    else if (!mtpLast) {
      // MindSpeed appends MTP on the last stage; a layout with MTP elsewhere needs MindSpeed's layout feature
      args.push(`--pipeline-model-parallel-layout "${o.ppLayout ?? megatronLayout(chunks)}"`);
      notes.push('MTP layers before the last chunk: uses MindSpeed\'s --pipeline-model-parallel-layout feature (incompatible with --noop-layers and dualpipev)');
    } else {
      const nl = noopLayers(chunks);
      if (l.vpp > 1) args.push(`--num-layers-per-virtual-pipeline-stage ${nl.perChunk}`);
      if (nl.noop.length) {
        args.push(`--noop-layers ${nl.noop.join(',')}`);
        notes.push(`num-layers padded from ${cfg.numLayers} to ${nl.numLayers} with no-op layers where the split leaves slots empty`);
        numLayers = nl.numLayers;
      }
    }
  } else if (l.pp > 1) {
    const perChunk = Math.ceil(cfg.numLayers / (l.pp * l.vpp));
    if (l.vpp > 1) args.push(`--num-layers-per-virtual-pipeline-stage ${perChunk}`);
    if (cfg.numLayers % (l.pp * l.vpp) !== 0) {
      const padded = perChunk * l.pp * l.vpp;
      if (format === 'mindspeed') {
        args.push(`--noop-layers ${Array.from({ length: padded - cfg.numLayers }, (_, i) => cfg.numLayers + i).join(',')}`);
        notes.push(`num-layers padded from ${cfg.numLayers} to ${padded} with noop layers at the end`);
        numLayers = padded;
      } else notes.push(`${cfg.numLayers} layers do not divide PP×VPP=${l.pp * l.vpp}: use --decoder-first-pipeline-num-layers / --decoder-last-pipeline-num-layers to balance`);
    }
  }
  args.push(...modelArgs(cfg, l.seqLen, numLayers));
  // Megatron-LM --fp8-recipe (megatron/training/arguments.py: delayed | tensorwise | mxfp8 | blockwise)
  args.push(o.dtype === 'fp8' ? `--bf16 --fp8-format hybrid --fp8-recipe ${o.fp8Recipe === 'block' ? 'blockwise' : 'tensorwise'}` : o.dtype === 'fp16' ? '--fp16' : '--bf16');
  if (o.distributedOptimizer) args.push('--use-distributed-optimizer');
  if (o.dpOverlap) args.push('--overlap-grad-reduce', '--overlap-param-gather');

  // recomputation
  if (o.recompute === 'full') args.push('--recompute-granularity full', '--recompute-method uniform', '--recompute-num-layers 1');
  else if (o.recompute === 'selective') {
    if (format === 'megatron') {
      const mods = [...new Set(o.recomputeModules.map((m) => MEGATRON_MODULES[m]).filter(Boolean))];
      if (mods.length) args.push('--recompute-granularity selective', `--recompute-modules ${mods.join(' ')}`);
      if (o.recomputeModules.includes('permute')) notes.push('permute recompute has no Megatron flag (MindSpeed: --moe-zero-memory)');
    } else {
      if (o.recomputeModules.includes('core-attn')) args.push('--recompute-granularity selective');
      if (o.recomputeModules.includes('mla-up-proj')) args.push('--recompute-mla-up-proj');
      if (o.recomputeModules.includes('norm')) args.push('--recompute-norm');
      if (o.recomputeModules.includes('activation')) args.push('--recompute-activation-function');
      if (o.recomputeModules.includes('moe-act') || o.recomputeModules.includes('permute')) args.push('--moe-zero-memory level0');
    }
  }
  // swapping
  if (o.swapAttention) {
    if (format === 'mindspeed') args.push('--swap-attention');
    else notes.push('attention-activation swapping has no Megatron-LM flag in this export (MindSpeed: --swap-attention)');
  }
  if (o.swapOptimizer) args.push(format === 'mindspeed' ? '--swap-optimizer' : '--optimizer-cpu-offload');
  // expert-parallel communication
  if (l.ep > 1) {
    if (format === 'mindspeed') {
      if (o.adaptivePipeOverlap) args.push('--moe-alltoall-overlap-comm');
      if (o.hierarchicalA2A) {
        if (!extendEp) notes.push('--moe-hierarchical-alltoallv needs --moe-tp-extend-ep (TP > 1 and EP a multiple of TP)');
        args.push('--moe-hierarchical-alltoallv');
        if (!o.adaptivePipeOverlap) args.push('--moe-alltoall-overlap-comm');
      }
      if (o.adaptivePipeOverlap) notes.push('--moe-fb-overlap (+ --schedules-method dualpipev) is the closer analogue of adaptive pipe overlap but MindSpeed lists it as conflicting with --moe-hierarchical-alltoallv');
    } else {
      if (o.hierarchicalA2A) args.push('--moe-token-dispatcher-type flex', '--moe-enable-deepep');
      if (o.adaptivePipeOverlap) args.push('--overlap-moe-expert-parallel-comm');
    }
  }
  if (o.imbalance < 1.1 && l.ep > 1) notes.push(`the plan assumes expert-load imbalance ρ = ${o.imbalance} (dynamic expert placement / balancing)`);
  if (o.tpCommOverlap > 0) args.push(format === 'mindspeed' ? '--use-ascend-mc2' : '--tp-comm-overlap');
  // dedupe (the dispatcher flag may appear twice: keep the last)
  const seen = new Map<string, string>();
  for (const a of args) seen.set(a.split(' ')[0], a);
  return { args: [...seen.values()], notes };
}

/** Shell-ready text: one flag per line, notes as comments. */
export function formatExport(r: ExportResult, format: ExportFormat): string {
  const head = format === 'megatron' ? '# Megatron-LM (pretrain_gpt.py) arguments' : '# MindSpeed-LLM (pretrain_gpt.py) arguments';
  return [head, ...r.notes.map((n) => `# note: ${n}`), 'ARGS="', ...r.args.map((a) => `  ${a}`), '"'].join('\n');
}
