// A plan = everything `simulate` needs, as plain JSON: model preset (+ overrides), device,
// device count, parallel layout and options. Built from CLI flags or read from a file
// (`simulate --save-plan`, `export --plan`), validated with every problem listed at once.
import { PRESETS, resolveConfig, type ConfigOverrides, type ModelConfig } from '../model/config.ts';
import { CATALOG, getSpec, type DeviceSpec, type Dtype } from '../device/specs.ts';
import { CALIBRATIONS } from './calibration.ts';
import { forEachLayout, layoutProblems } from './layout.ts';
import { memoryBreakdown } from './memory.ts';
import { modelCost } from './model-cost.ts';
import { simulate } from './cost-model.ts';
import { PAPER_DEVICE, PAPER_MODEL, PAPER_OPTIMISED_OPTIONS, PAPER_BASELINE_OPTIONS, paperLayout } from './paper.ts';
import { defaultSchedule } from './schedule.ts';
import { expandLayout, parseLayout } from './pp-layout.ts';
import { DEFAULT_OPTIONS, RECOMPUTE_MODULES, type ParallelLayout, type RecomputeModule, type Schedule, type SimOptions, type SimResult } from './types.ts';

export interface Plan {
  model: string;
  overrides?: ConfigOverrides;
  device: string;
  devices: number;
  layout: ParallelLayout;
  options: SimOptions;
}

export class PlanError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid plan (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n  - ${problems.join('\n  - ')}`);
  }
}

export const calibrationFor = (device: string) => (device.startsWith('ascend') ? CALIBRATIONS.ascend : CALIBRATIONS.gpu);

/** String flags as parsed by the CLI (all optional). */
export interface PlanFlags {
  model?: string; device?: string; devices?: string;
  tp?: string; pp?: string; vpp?: string; ep?: string; cp?: string; mbs?: string; gbs?: string; seq?: string;
  recompute?: string; 'recompute-modules'?: string; swap?: string; a2a?: string; overlap?: string;
  imbalance?: string; 'dist-opt'?: string; schedule?: string; dtype?: string; flops?: string; baseline?: boolean;
  'tp-overlap'?: string; 'pp-layout'?: string;
}

const SCHEDULES: Schedule[] = ['gpipe', '1f1b', 'interleaved', 'zero-bubble', 'dualpipe'];

/** Build a plan from flags. Paper preset defaults = the paper's optimised setup (or baseline with --baseline). */
export function planFromFlags(f: PlanFlags): Plan {
  const problems: string[] = [];
  const model = f.model ?? 'pangu-ultra-moe-718b';
  const isPaper = model === PAPER_MODEL.name;
  if (!PRESETS[model]) problems.push(`unknown model '${model}' (known: ${Object.keys(PRESETS).join(', ')})`);
  const device = f.device ?? (isPaper ? PAPER_DEVICE : 'h100-sxm');
  if (!CATALOG[device]) problems.push(`unknown device '${device}' (known: ${Object.keys(CATALOG).join(', ')})`);
  const num = (name: keyof PlanFlags, v: string | undefined, dflt: number, integer = true): number => {
    if (v === undefined) return dflt;
    const x = Number(v);
    if (!Number.isFinite(x) || (integer && !Number.isInteger(x)) || x <= 0) { problems.push(`--${name} must be a positive ${integer ? 'integer' : 'number'} (got '${v}')`); return dflt; }
    return x;
  };
  const devices = num('devices', f.devices, isPaper ? (f.baseline ? 4096 : 6144) : 8);
  const base = isPaper ? (f.baseline ? PAPER_BASELINE_OPTIONS : PAPER_OPTIMISED_OPTIONS) : { ...DEFAULT_OPTIONS, calibration: calibrationFor(device) };
  const o = optionsFromFlags(f, base, problems);
  if (!PRESETS[model]) throw new PlanError(problems);

  const cfg = resolveConfig(model);
  const spec = CATALOG[device] ? getSpec(device) : FALLBACK_SPEC;
  const seq = num('seq', f.seq, isPaper ? 4096 : Math.min(4096, cfg.maxSeqLen));
  const layoutGiven = ['tp', 'pp', 'vpp', 'ep', 'cp', 'mbs'].some((k) => f[k as keyof PlanFlags] !== undefined);
  if (o.ppLayout && !isPaper && f.pp === undefined) problems.push('--pp-layout needs --pp (and the other layout flags) for this model');
  let layout: ParallelLayout;
  if (isPaper && !layoutGiven) {
    layout = { ...paperLayout(devices), seqLen: seq, dp: devices / (8 * 16) };
    if (f.gbs) layout.globalBatch = num('gbs', f.gbs, layout.globalBatch);
  } else {
    const tp = num('tp', f.tp, 1), pp = num('pp', f.pp, 1), cp = num('cp', f.cp, 1);
    const dp = devices / (tp * pp * cp);
    const mbs = num('mbs', f.mbs, 1);
    layout = {
      tp, pp, cp, dp, vpp: num('vpp', f.vpp, 1), ep: num('ep', f.ep, 1), microBatch: mbs,
      globalBatch: num('gbs', f.gbs, Math.max(1, Math.round(dp)) * mbs * 8), seqLen: seq,
    };
    if (!layoutGiven && problems.length === 0) {
      const best = bestLayout(cfg, devices, spec, o, layout.globalBatch, seq);
      if (best) layout = best;
    }
  }
  if (o.ppLayout) {
    // Megatron derives VPP from the layout: chunks / PP
    const chunks = expandLayout(o.ppLayout.replace(/\s/g, '')).length;
    if (f.vpp === undefined && chunks % layout.pp === 0) layout.vpp = chunks / layout.pp;
  }
  const plan: Plan = { model, device, devices, layout, options: o };
  const all = [...problems, ...planProblems(plan).filter((x) => !problems.includes(x))];
  if (all.length) throw new PlanError(all);
  return plan;
}

// used only to keep checking the layout when the device name is unknown
const FALLBACK_SPEC = Object.values(CATALOG)[0];

/** Every problem with a plan: unknown model or device, invalid model config, invalid layout. */
export function planProblems(p: Plan): string[] {
  const problems: string[] = [];
  if (!PRESETS[p.model]) problems.push(`unknown model '${p.model}' (known: ${Object.keys(PRESETS).join(', ')})`);
  if (!CATALOG[p.device]) problems.push(`unknown device '${p.device}' (known: ${Object.keys(CATALOG).join(', ')})`);
  if (!PRESETS[p.model]) return problems;
  let cfg: ModelConfig;
  try { cfg = resolveConfig(p.model, p.overrides ?? {}); } catch (e) { return [...problems, (e as Error).message]; }
  problems.push(...layoutProblems(cfg, p.layout, p.devices, CATALOG[p.device] ?? FALLBACK_SPEC));
  if (p.options.ppLayout !== undefined) {
    if ((p.options.schedule ?? defaultSchedule(p.layout.pp, p.layout.vpp)) === 'dualpipe') problems.push('a pipeline layout (--pp-layout) cannot be combined with the DualPipe schedule');
    problems.push(...parseLayout(p.options.ppLayout, cfg.numLayers, cfg.numMtpLayers, p.layout.pp, p.layout.vpp).problems);
  }
  return problems;
}


/** Options from flags on top of `base`; problems are appended to `problems`. */
export function optionsFromFlags(f: PlanFlags, base: SimOptions, problems: string[]): SimOptions {
  const o: SimOptions = { ...base };
  if (f.recompute !== undefined) {
    if (!['none', 'selective', 'full'].includes(f.recompute)) problems.push(`--recompute must be none|selective|full (got '${f.recompute}')`);
    else o.recompute = f.recompute as SimOptions['recompute'];
  }
  if (f['recompute-modules'] !== undefined) {
    const mods = f['recompute-modules'].split(',').filter(Boolean);
    const bad = mods.filter((m) => !RECOMPUTE_MODULES.includes(m as RecomputeModule));
    if (bad.length) problems.push(`--recompute-modules: unknown ${bad.join(', ')} (known: ${RECOMPUTE_MODULES.join(', ')})`);
    o.recomputeModules = mods as RecomputeModule[];
    if (f.recompute === undefined) o.recompute = 'selective';
  }
  if (f.swap !== undefined) {
    const parts = f.swap.split(',');
    const bad = parts.filter((p) => !['none', 'attention', 'optimizer'].includes(p));
    if (bad.length) problems.push(`--swap must be a list of none|attention|optimizer (got '${f.swap}')`);
    o.swapAttention = parts.includes('attention');
    o.swapOptimizer = parts.includes('optimizer');
  }
  if (f.a2a !== undefined) {
    if (!['flat', 'hierarchical', 'dedup', 'allgather'].includes(f.a2a)) problems.push(`--a2a must be flat|hierarchical|dedup|allgather (got '${f.a2a}')`);
    o.hierarchicalA2A = f.a2a !== 'flat';
    // hierarchical: the base's variant (the paper's: MindSpeed all-gather); dedup: DeepEP-style; allgather: MindSpeed
    if (f.a2a === 'dedup' || f.a2a === 'allgather') o.hierarchicalMode = f.a2a;
  }
  if (f.overlap !== undefined) {
    if (!['on', 'off'].includes(f.overlap)) problems.push(`--overlap must be on|off (got '${f.overlap}')`);
    o.adaptivePipeOverlap = f.overlap === 'on';
  }
  if (f['dist-opt'] !== undefined) {
    if (!['on', 'off'].includes(f['dist-opt'])) problems.push(`--dist-opt must be on|off (got '${f['dist-opt']}')`);
    o.distributedOptimizer = f['dist-opt'] === 'on';
  }
  if (f.imbalance !== undefined) {
    const x = Number(f.imbalance);
    if (!Number.isFinite(x)) problems.push(`--imbalance must be a number (got '${f.imbalance}')`);
    else o.imbalance = x;
  }
  if (o.imbalance < 1) problems.push(`--imbalance must be >= 1 (max/mean load), got ${o.imbalance}`);
  if (f['tp-overlap'] !== undefined) {
    const x = Number(f['tp-overlap']);
    if (!(x >= 0 && x <= 1)) problems.push(`--tp-overlap must be in [0, 1] (got '${f['tp-overlap']}')`);
    else o.tpCommOverlap = x;
  }
  if (f.schedule !== undefined) {
    if (!SCHEDULES.includes(f.schedule as Schedule)) problems.push(`--schedule must be ${SCHEDULES.join('|')} (got '${f.schedule}')`);
    else o.schedule = f.schedule as Schedule;
  }
  if (f.dtype !== undefined) {
    if (!['bf16', 'fp16', 'fp8'].includes(f.dtype)) problems.push(`--dtype must be bf16|fp16|fp8 (got '${f.dtype}')`);
    else { o.dtype = f.dtype as Dtype; o.mfuDtype = 'bf16'; }
  }
  if (f['pp-layout'] !== undefined) o.ppLayout = f['pp-layout'];
  if (f.flops !== undefined) {
    if (!['causal', 'non-causal'].includes(f.flops)) problems.push(`--flops must be causal|non-causal (got '${f.flops}')`);
    else o.causalFlops = f.flops === 'causal';
  }
  return o;
}

/** Every problem with a plan (model, device, layout, options), thrown as one PlanError. */
export function checkPlan(p: Plan): { cfg: ModelConfig; spec: DeviceSpec } {
  const problems = planProblems(p);
  if (problems.length) throw new PlanError(problems);
  return { cfg: resolveConfig(p.model, p.overrides ?? {}), spec: getSpec(p.device) };
}

/** Run a plan through the cost model. */
export function simulatePlan(p: Plan): SimResult {
  const { cfg, spec } = checkPlan(p);
  const mc = modelCost(cfg, p.layout.seqLen, p.options.causalFlops, p.options.gatedMlp);
  return simulate(mc, p.layout, p.options, spec);
}

/** Fastest feasible layout for a model (used when no layout flags are given). */
export function bestLayout(cfg: ModelConfig, devices: number, spec: DeviceSpec, o: SimOptions, globalBatch: number, seqLen: number): ParallelLayout | null {
  const mc = modelCost(cfg, seqLen, o.causalFlops, o.gatedMlp);
  let best: ParallelLayout | null = null, bestT = Infinity;
  forEachLayout(cfg, devices, spec, { seqLen, globalBatch }, (l) => {
    const m = l.globalBatch / (l.dp * l.microBatch);
    if (!memoryBreakdown(mc, l, o, spec, o.schedule ?? defaultSchedule(l.pp, l.vpp), m).fits) return;
    const r = simulate(mc, l, o, spec);
    if (r.stepTimeSeconds < bestT) { bestT = r.stepTimeSeconds; best = { ...l }; }
  });
  return best;
}

/** Parse a plan file's JSON (as written by `simulate --save-plan`); missing options take defaults. */
export function parsePlan(json: unknown): Plan {
  const problems: string[] = [];
  if (typeof json !== 'object' || json === null) throw new PlanError(['plan: expected a JSON object']);
  const j = json as Record<string, unknown>;
  if (typeof j.model !== 'string') problems.push('model: expected a preset name');
  if (typeof j.device !== 'string') problems.push('device: expected a device spec name');
  if (typeof j.devices !== 'number') problems.push('devices: expected a number');
  if (typeof j.layout !== 'object' || j.layout === null) problems.push('layout: expected {tp, pp, vpp, ep, cp, dp, microBatch, globalBatch, seqLen}');
  if (problems.length) throw new PlanError(problems);
  const device = j.device as string;
  const options = { ...DEFAULT_OPTIONS, calibration: calibrationFor(device), ...(j.options as object ?? {}) } as SimOptions;
  const plan: Plan = { model: j.model as string, overrides: j.overrides as ConfigOverrides | undefined, device, devices: j.devices as number, layout: j.layout as ParallelLayout, options };
  checkPlan(plan);
  return plan;
}
