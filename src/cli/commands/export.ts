// `ultramoe export --format megatron|mindspeed`: the training arguments of a plan, given as a
// plan file (`--plan plan.json`, written by `simulate --save-plan`) or as the same flags as simulate.
import { PLAN_OPTIONS } from '../plan-flags.ts';
import { readFileSync } from 'node:fs';
import { parse, UsageError } from '../args.ts';
import { exportArgs, formatExport, type ExportFormat } from '../../sim/export.ts';
import { parsePlan, PlanError, planFromFlags, type PlanFlags } from '../../sim/plan.ts';

export const summary = 'export a plan (from simulate/search flags or --plan file) as Megatron-LM or MindSpeed-LLM arguments';

const USAGE = `ultramoe export --format megatron|mindspeed [--plan plan.json | <simulate flags>] [--json]`;

export async function run(argv: string[]): Promise<number> {
  try {
    const { values } = parse(argv, {
      format: { type: 'string', default: 'mindspeed' }, plan: { type: 'string' },
      ...PLAN_OPTIONS,
    }, USAGE);
    if (values.help) { console.log(USAGE); return 0; }
    if (!['megatron', 'mindspeed'].includes(values.format!)) throw new UsageError(`--format must be megatron|mindspeed (got '${values.format}')\nusage: ${USAGE}`);
    let plan;
    if (values.plan) {
      let json: unknown;
      try { json = JSON.parse(readFileSync(values.plan, 'utf8')); } catch (e) { throw new UsageError(`cannot read plan '${values.plan}': ${(e as Error).message}`); }
      plan = parsePlan(json);
    } else plan = planFromFlags(values as PlanFlags);
    const format = values.format as ExportFormat;
    const r = exportArgs(plan, format);
    if (values.json) console.log(JSON.stringify({ format, args: r.args, notes: r.notes, plan }));
    else console.log(formatExport(r, format));
    return 0;
  } catch (e) {
    if (e instanceof UsageError || e instanceof PlanError) { console.error(`export: ${e.message}`); return 2; }
    throw e;
  }
}
