// `ultramoe search`: architecture variants within a parameter budget × every parallel layout that
// divides evenly and fits in memory on N devices; prints the top N, writes all feasible results
// (CSV via --out) and reports configurations evaluated per second.
import { writeFileSync } from 'node:fs';
import * as aq from 'arquero';
import { CATALOG, getSpec } from '../../device/specs.ts';
import { PRESETS, resolveConfig } from '../../model/config.ts';
import { parse, UsageError } from '../args.ts';
import { calibrationFor, optionsFromFlags, PlanError, type PlanFlags } from '../../sim/plan.ts';
import { PAPER_MODEL, PAPER_OPTIMISED_OPTIONS } from '../../sim/paper.ts';
import { PAPER_SPACE, runSearch, type ArchSpace } from '../../sim/search.ts';
import { DEFAULT_OPTIONS } from '../../sim/types.ts';

export const summary = 'search model shapes within a parameter budget × parallel layouts; top-N table, CSV, configs/s';

const USAGE = `ultramoe search --model-params 718e9 --devices 6144 --device ascend-910b [--top N] [--json] [--out all.csv]
  [--tolerance 0.05] [--active-params 35e9:43e9] [--base <preset>] [--seq 4096] [--gbs 6144] [--objective mfu|tokens]
  [--hidden 6144,7680,..] [--layers ..] [--experts ..] [--expert-size ..] [--topk ..] [--heads ..]
  [--recompute ..] [--recompute-modules ..] [--swap ..] [--a2a ..] [--overlap ..] [--imbalance R]`;

const list = (name: string, v: string | undefined, dflt: number[], problems: string[]): number[] => {
  if (v === undefined) return dflt;
  const xs = v.split(',').map(Number);
  if (xs.some((x) => !Number.isInteger(x) || x <= 0)) { problems.push(`--${name} must be a comma-separated list of positive integers (got '${v}')`); return dflt; }
  return xs;
};

export async function run(argv: string[]): Promise<number> {
  try {
    const { values } = parse(argv, {
      'model-params': { type: 'string', default: '718e9' }, tolerance: { type: 'string', default: '0.05' },
      'active-params': { type: 'string' }, base: { type: 'string', default: PAPER_MODEL.name },
      devices: { type: 'string', default: '6144' }, device: { type: 'string', default: 'ascend-910b' },
      seq: { type: 'string', default: '4096' }, gbs: { type: 'string', default: '6144' }, objective: { type: 'string', default: 'mfu' },
      top: { type: 'string', default: '10' }, out: { type: 'string' }, json: { type: 'boolean', default: false },
      hidden: { type: 'string' }, layers: { type: 'string' }, experts: { type: 'string' }, 'expert-size': { type: 'string' },
      topk: { type: 'string' }, heads: { type: 'string' }, mbs: { type: 'string' },
      recompute: { type: 'string' }, 'recompute-modules': { type: 'string' }, swap: { type: 'string' }, a2a: { type: 'string' },
      overlap: { type: 'string' }, imbalance: { type: 'string' }, 'dist-opt': { type: 'string' }, schedule: { type: 'string' },
      dtype: { type: 'string' }, flops: { type: 'string' }, help: { type: 'boolean', default: false },
    }, USAGE);
    if (values.help) { console.log(USAGE); return 0; }
    const problems: string[] = [];
    const num = (name: string, v: string, integer: boolean) => {
      const x = Number(v);
      if (!Number.isFinite(x) || x <= 0 || (integer && !Number.isInteger(x))) problems.push(`--${name} must be a positive ${integer ? 'integer' : 'number'} (got '${v}')`);
      return x;
    };
    const modelParams = num('model-params', values['model-params']!, false);
    const tolerance = num('tolerance', values.tolerance!, false);
    const devices = num('devices', values.devices!, true);
    const seq = num('seq', values.seq!, true), gbs = num('gbs', values.gbs!, true), top = num('top', values.top!, true);
    if (!CATALOG[values.device!]) problems.push(`unknown device '${values.device}' (known: ${Object.keys(CATALOG).join(', ')})`);
    if (!PRESETS[values.base!]) problems.push(`unknown base model '${values.base}' (known: ${Object.keys(PRESETS).join(', ')})`);
    if (!['mfu', 'tokens'].includes(values.objective!)) problems.push(`--objective must be mfu|tokens (got '${values.objective}')`);
    let active: [number, number] | undefined;
    if (values['active-params']) {
      const [a, b] = values['active-params'].split(':').map(Number);
      if (!(a > 0 && b >= a)) problems.push(`--active-params must be min:max (got '${values['active-params']}')`);
      else active = [a, b];
    }
    const space: ArchSpace = {
      hidden: list('hidden', values.hidden, PAPER_SPACE.hidden, problems), layers: list('layers', values.layers, PAPER_SPACE.layers, problems),
      experts: list('experts', values.experts, PAPER_SPACE.experts, problems), expertSize: list('expert-size', values['expert-size'], PAPER_SPACE.expertSize, problems),
      topk: list('topk', values.topk, PAPER_SPACE.topk, problems), heads: list('heads', values.heads, PAPER_SPACE.heads, problems),
    };
    const mbs = list('mbs', values.mbs, [1, 2], problems);
    const device = values.device!;
    const base = device.startsWith('ascend') ? PAPER_OPTIMISED_OPTIONS : { ...DEFAULT_OPTIONS, calibration: calibrationFor(device) };
    const options = optionsFromFlags(values as PlanFlags, base, problems);
    if (problems.length) throw new PlanError(problems);

    const out = runSearch({
      base: resolveConfig(values.base!), space, modelParams, tolerance, activeParams: active, devices, spec: getSpec(device),
      seqLen: seq, globalBatch: gbs, microBatches: mbs, options, objective: values.objective as 'mfu' | 'tokens', top,
    });
    if (values.out) {
      const c = out.columns, vl = out.variantList;
      const pick = (f: (i: number) => number) => Array.from({ length: c.mfu.length }, (_, i) => f(i));
      const t = aq.table({
        hidden: pick((i) => vl[c.variant[i]].hidden), layers: pick((i) => vl[c.variant[i]].layers),
        experts: pick((i) => vl[c.variant[i]].experts), expertSize: pick((i) => vl[c.variant[i]].expertSize),
        topk: pick((i) => vl[c.variant[i]].topk), heads: pick((i) => vl[c.variant[i]].heads),
        totalParams: pick((i) => vl[c.variant[i]].totalParams), activatedParams: pick((i) => vl[c.variant[i]].activatedParams),
        tp: c.tp, pp: c.pp, vpp: c.vpp, ep: c.ep, cp: c.cp, dp: c.dp, microBatch: c.microBatch, fullRecompute: c.fullRecompute,
        mfu: c.mfu, tokensPerSecond: c.tokensPerSecond, stepTimeSeconds: c.stepTimeSeconds, peakMemoryBytes: c.peakMemoryBytes,
      }).orderby(aq.desc(values.objective === 'mfu' ? 'mfu' : 'tokensPerSecond'));
      writeFileSync(values.out, t.toCSV());
    }
    const summaryLine = { evaluated: out.evaluated, feasible: out.feasible, variants: out.variants, seconds: out.seconds, configsPerSecond: out.configsPerSecond };
    if (values.json) { console.log(JSON.stringify({ ...summaryLine, top: out.top })); return 0; }
    const tt = aq.from(out.top.map((r) => ({
      hidden: r.hidden, layers: r.layers, experts: r.experts, 'expert f': r.expertSize, k: r.topk, heads: r.heads,
      'total B': (r.totalParams / 1e9).toFixed(1), 'active B': (r.activatedParams / 1e9).toFixed(1),
      layout: `TP${r.tp} PP${r.pp} VPP${r.vpp} EP${r.ep} DP${r.dp} mb${r.microBatch}`, recompute: r.recompute,
      'MFU %': (100 * r.mfu).toFixed(1), 'Mtok/s': (r.tokensPerSecond / 1e6).toFixed(3), 'step s': r.stepTimeSeconds.toFixed(2), 'mem GiB': r.peakMemoryGiB.toFixed(1),
    })));
    console.log(tt.toMarkdown());
    console.log(`${out.variants} shapes within ${(tolerance * 100).toFixed(0)}% of ${(modelParams / 1e9).toFixed(0)}B; ${out.evaluated} configurations evaluated (${out.feasible} fit in memory) in ${out.seconds.toFixed(2)} s = ${Math.round(out.configsPerSecond)} configs/s${values.out ? `; all feasible results in ${values.out}` : ''}`);
    return 0;
  } catch (e) {
    if (e instanceof UsageError || e instanceof PlanError) { console.error(`search: ${e.message}`); return 2; }
    throw e;
  }
}
