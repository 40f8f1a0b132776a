// `ultramoe flops --model <preset> --seq N`: Megatron FLOPs per token (by component) and
// parameter counts (total, activated). --non-causal switches to the older convention.
import { PRESETS, resolveConfig } from '../../model/config.ts';
import { modelFlops } from '../../model/flops.ts';
import { countParams } from '../../model/params-count.ts';
import { parse, UsageError } from '../args.ts';

export const summary = 'FLOPs per token (Megatron convention) and total/activated parameters of a model preset';

const USAGE = 'ultramoe flops [--model <preset>] [--seq N] [--batch B] [--non-causal] [--json]';

const fmt = (x: number, unit = '') => {
  const a = Math.abs(x);
  const [d, s] = a >= 1e12 ? [1e12, 'T'] : a >= 1e9 ? [1e9, 'G'] : a >= 1e6 ? [1e6, 'M'] : a >= 1e3 ? [1e3, 'K'] : [1, ''];
  return `${(x / d).toFixed(2)} ${s}${unit}`;
};

export async function run(argv: string[]): Promise<number> {
  try {
    const { values } = parse(argv, {
      model: { type: 'string', default: 'pangu-ultra-moe-718b' },
      seq: { type: 'string', default: '4096' },
      batch: { type: 'string', default: '1' },
      'non-causal': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    }, USAGE);
    if (values.help) { console.log(USAGE); return 0; }
    const problems: string[] = [];
    if (!PRESETS[values.model!]) problems.push(`unknown model '${values.model}' (known: ${Object.keys(PRESETS).join(', ')})`);
    const seq = Number(values.seq), batch = Number(values.batch);
    if (!Number.isInteger(seq) || seq <= 0) problems.push(`--seq must be a positive integer (got '${values.seq}')`);
    if (!Number.isInteger(batch) || batch <= 0) problems.push(`--batch must be a positive integer (got '${values.batch}')`);
    if (problems.length) throw new UsageError(problems.join('\n'));
    const cfg = resolveConfig(values.model!);
    const causal = !values['non-causal'];
    const f = modelFlops(cfg, { seqLen: seq, batch, causal });
    const p = countParams(cfg);
    const out = {
      model: cfg.name, seqLen: seq, batch, causal,
      flopsPerToken: f.flopsPerToken, flopsPerIteration: f.flopsPerIteration, sixN: f.sixN,
      components: f.perToken, routerPerToken: f.routerPerToken,
      totalParams: p.total, activatedParams: p.activated, totalWithMtp: p.totalWithMtp, mtpParams: p.mtp,
      layers: f.counts,
    };
    if (values.json) { console.log(JSON.stringify(out)); return 0; }
    const lines = [
      `${cfg.name}: seq ${seq}, ${causal ? 'causal (Megatron)' : 'non-causal (Narayanan/PaLM)'} attention FLOPs`,
      `  parameters      total ${fmt(p.total)} (with MTP ${fmt(p.totalWithMtp)}), activated ${fmt(p.activated)}`,
      `  FLOPs/token     ${fmt(f.flopsPerToken, 'FLOP')}   (6·N_activated = ${fmt(f.sixN, 'FLOP')})`,
      ...Object.entries(f.perToken).filter(([k]) => k !== 'total').map(([k, v]) =>
        `    ${k.padEnd(16)} ${fmt(v, 'FLOP').padStart(14)}  ${((100 * v) / f.flopsPerToken).toFixed(1).padStart(5)}%`),
      `  FLOPs/iteration ${fmt(f.flopsPerIteration, 'FLOP')} (batch ${batch})`,
    ];
    console.log(lines.join('\n'));
    return 0;
  } catch (e) {
    if (e instanceof UsageError) { console.error(`flops: ${e.message}`); return 2; }
    throw e;
  }
}
