// Parallel layout: parse `tp=2,ep=4,dp=2,cp=1,pp=1` and validate it against the model config, the batch
// and the cluster BEFORE any work is done (every problem listed at once, like validateConfig).
//
// Megatron's layout (groups.ts has the rank order): dense layers use tp·cp·dp·pp = world ranks; expert
// layers fold the same ranks into etp·ep·edp·pp, so EP must divide tp·cp·dp (the EP group is carved out of
// the non-PP ranks) and expert-DP = world / (ep·etp·pp). Pure functions on numbers.
import type { ModelConfig } from '../model/config.ts';

export interface ParallelSpec {
  tp: number; cp: number; dp: number; pp: number; ep: number;
  /** expert tensor parallel (only 1 is executed) */
  etp: number;
}

export interface LayoutCheckInput {
  model: ModelConfig;
  /** devices in the cluster (nodes × devices per node) */
  clusterDevices?: number;
  /** global batch (sequences) and sequence length of one step */
  globalBatch?: number;
  seqLen?: number;
  /** micro-batches per step per DP rank */
  microBatches?: number;
  /** features the executor implements (default: everything the parser knows) */
  supported?: Partial<Record<'tp' | 'cp' | 'pp' | 'etp', number>>;
}

export interface ResolvedLayout extends ParallelSpec {
  world: number;
  /** expert data parallel size = world / (ep·etp·pp) */
  edp: number;
}

export class LayoutError extends Error {
  constructor(readonly problems: string[], what: string) {
    super(`invalid parallel layout ${what} (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n  - ${problems.join('\n  - ')}`);
  }
}

const KEYS = ['tp', 'cp', 'dp', 'pp', 'ep', 'etp'] as const;

/** 'tp=2,ep=4,dp=2' → sizes (missing ones are 1); unknown keys and bad values are errors. */
export function parseLayout(text: string): ParallelSpec {
  const spec: ParallelSpec = { tp: 1, cp: 1, dp: 1, pp: 1, ep: 1, etp: 1 };
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const part of text.split(/[,\s]+/).filter(Boolean)) {
    const m = /^([a-z]+)=(.*)$/.exec(part);
    if (!m) { problems.push(`'${part}' is not key=value`); continue; }
    const [, k, v] = m;
    if (!(KEYS as readonly string[]).includes(k)) { problems.push(`unknown dimension '${k}' (known: ${KEYS.join(', ')})`); continue; }
    if (seen.has(k)) problems.push(`'${k}' given twice`);
    seen.add(k);
    const n = Number(v);
    if (!(Number.isInteger(n) && n >= 1)) { problems.push(`${k}: expected an integer >= 1, got '${v}'`); continue; }
    spec[k as keyof ParallelSpec] = n;
  }
  if (problems.length) throw new LayoutError(problems, `'${text}'`);
  return spec;
}

export function formatLayout(s: ParallelSpec): string {
  return KEYS.filter((k) => k !== 'etp' || s.etp !== 1).map((k) => `${k}=${s[k]}`).join(',');
}

/** Every problem of `spec` for this model / batch / cluster; empty when valid. */
export function layoutProblems(spec: ParallelSpec, input: LayoutCheckInput): string[] {
  const p: string[] = [];
  const { tp, cp, dp, pp, ep, etp } = spec;
  const m = input.model, moe = m.moe;
  for (const k of KEYS) if (!(Number.isInteger(spec[k]) && spec[k] >= 1)) p.push(`${k}: expected an integer >= 1, got ${spec[k]}`);
  if (p.length) return p;
  const world = tp * cp * dp * pp;
  if (input.clusterDevices !== undefined && world > input.clusterDevices)
    p.push(`world tp·cp·dp·pp = ${tp}·${cp}·${dp}·${pp} = ${world} devices, the cluster has only ${input.clusterDevices}`);
  // expert layout (Megatron folding): the EP×ETP group lives inside the tp·cp·dp ranks of one PP stage
  if ((tp * cp * dp) % (ep * etp) !== 0) p.push(`ep·etp = ${ep}·${etp} = ${ep * etp} must divide tp·cp·dp = ${tp * cp * dp} (expert-DP = world/(ep·etp·pp) must be an integer)`);
  if (moe.numExperts % ep !== 0) p.push(`numExperts ${moe.numExperts} is not divisible by ep=${ep}`);
  if (m.numHeads % tp !== 0) p.push(`numHeads ${m.numHeads} is not divisible by tp=${tp}`);
  if (m.attention === 'gqa' && m.numKvHeads % tp !== 0) p.push(`numKvHeads ${m.numKvHeads} is not divisible by tp=${tp}`);
  if (m.vocabSize % tp !== 0) p.push(`vocabSize ${m.vocabSize} is not divisible by tp=${tp} (vocab-parallel embedding)`);
  if (m.denseIntermediateSize % tp !== 0) p.push(`denseIntermediateSize ${m.denseIntermediateSize} is not divisible by tp=${tp}`);
  if (pp > 1 && m.numLayers % pp !== 0) p.push(`numLayers ${m.numLayers} is not divisible by pp=${pp}`);
  if (input.seqLen !== undefined && cp > 1 && input.seqLen % (2 * cp) !== 0)
    p.push(`seqLen ${input.seqLen} is not divisible by 2·cp = ${2 * cp} (load-balanced causal chunks)`);
  if (input.globalBatch !== undefined) {
    const mb = input.microBatches ?? 1;
    if (input.globalBatch % (dp * mb) !== 0) p.push(`global batch ${input.globalBatch} is not divisible by dp·microBatches = ${dp}·${mb} = ${dp * mb}`);
  }
  if (tp > 1 && input.seqLen !== undefined && input.globalBatch !== undefined && moe.numExperts > 0) {
    // MoE with TP needs sequence parallelism (Megatron): the tokens of a DP rank are split over TP
    const tokens = (input.globalBatch / dp / (input.microBatches ?? 1)) * input.seqLen;
    if (Number.isInteger(tokens) && tokens % tp !== 0) p.push(`tokens per micro-batch ${tokens} are not divisible by tp=${tp} (sequence parallel MoE)`);
  }
  const sup = input.supported;
  if (sup) for (const k of ['tp', 'cp', 'pp', 'etp'] as const) {
    const max = sup[k];
    if (max !== undefined && spec[k] > max) p.push(`${k}=${spec[k]} is not implemented by this executor (max ${max})`);
  }
  return p;
}

/** Validate (throws LayoutError listing every problem) and derive world and expert-DP. */
export function resolveLayout(spec: ParallelSpec | string, input: LayoutCheckInput): ResolvedLayout {
  const s = typeof spec === 'string' ? parseLayout(spec) : spec;
  const problems = layoutProblems(s, input);
  if (problems.length) throw new LayoutError(problems, `'${formatLayout(s)}'`);
  const world = s.tp * s.cp * s.dp * s.pp;
  return { ...s, world, edp: world / (s.ep * s.etp * s.pp) };
}
