// `ultramoe simulate`: iteration time, MFU, tokens/s and per-device memory of a model × parallel
// layout × device × options, with a time breakdown. For the paper preset the defaults are the
// paper's optimised setup (6144 Ascend 910B, hierarchical all-to-all, adaptive pipe overlap,
// fine-grained recompute + swap, dynamic placement); --baseline gives the 4K-NPU baseline.
import { PLAN_OPTIONS } from '../plan-flags.ts';
import { writeFileSync } from 'node:fs';
import { parse, UsageError } from '../args.ts';
import { PlanError, planFromFlags, simulatePlan, type PlanFlags } from '../../sim/plan.ts';
import type { SimResult } from '../../sim/types.ts';

export const summary = 'simulate one training iteration: MFU, tokens/s, step time, memory per device, time breakdown';

const USAGE = `ultramoe simulate [--model <preset>] [--devices N] [--device <spec>] [--baseline]
  [--tp N --pp N --vpp N --ep N --cp N --mbs N] [--gbs N] [--seq N]   (no layout flags: the fastest feasible layout)
  [--recompute none|selective|full] [--recompute-modules core-attn,mla-up-proj,norm,activation,moe-act,permute]
  [--swap none|attention|optimizer[,..]] [--a2a flat|hierarchical|dedup|allgather] [--overlap on|off] [--imbalance R]
  [--dist-opt on|off] [--tp-overlap F] [--schedule gpipe|1f1b|interleaved|zero-bubble|dualpipe]
  [--pp-layout "Et*3|(tt|)*29,m|L"]   (Megatron layout string; default: a time-balanced split, lighter last stage)
  [--dtype bf16|fp8] [--flops causal|non-causal] [--save-plan plan.json] [--json]`;

const GiB = 2 ** 30;

export function formatResult(r: SimResult, title: string): string {
  const l = r.layout, t = r.time, m = r.memory;
  const pct = (x: number) => `${((100 * x) / t.total).toFixed(1).padStart(5)}%`;
  const rows: Array<[string, number]> = [
    ['compute', t.compute], ['recompute', t.recompute], ['TP comm (exposed)', t.tpComm], ['EP comm (exposed)', t.epComm],
    ['CP comm (exposed)', t.cpComm], ['PP comm (exposed)', t.ppComm], ['DP comm (exposed)', t.dpComm], ['pipeline bubble', t.bubble],
    ['optimizer step', t.optimizer], ['swap (exposed)', t.swap], ['kernel fixed costs', t.overhead],
  ];
  return [
    title,
    `  layout    TP${l.tp} PP${l.pp} VPP${l.vpp} EP${l.ep} CP${l.cp} DP${l.dp}, micro-batch ${l.microBatch}, global batch ${l.globalBatch} × seq ${l.seqLen} (${r.microBatches} micro-batches)`,
    `  MFU       ${(100 * r.mfu).toFixed(1)}%   (HFU ${(100 * r.hfu).toFixed(1)}%)`,
    `  tokens/s  ${(r.tokensPerSecond / 1e6).toFixed(3)} M   (${(r.tokensPerSecond / r.devices).toFixed(0)} per device)`,
    `  step      ${r.stepTimeSeconds.toFixed(2)} s   bubble ${(100 * r.bubbleFraction).toFixed(1)}% of the ideal time`,
    ...(l.pp > 1 ? [`  stages    ${r.stages.perStage} layers on the fullest of stages 0-${l.pp - 2}, ${r.stages.lastStage} on the last + output heads worth ${r.stages.headLayerEquivalents.toFixed(2)} layers of time`
      + ` (heaviest ${Math.max(r.stages.perStage, r.stages.lastStage + r.stages.headLayerEquivalents).toFixed(2)} layer-equivalents; layers include MTP)`] : []),
    `  memory    ${(m.total / GiB).toFixed(1)} / ${(m.capacity / GiB).toFixed(0)} GiB per device${m.fits ? '' : '  ** DOES NOT FIT **'}: weights ${(m.weights / GiB).toFixed(1)}, grads ${(m.gradients / GiB).toFixed(1)}, optimizer ${(m.optimizer / GiB).toFixed(1)}, activations ${(m.activations / GiB).toFixed(1)}, reserved ${(m.reserved / GiB).toFixed(1)}${m.hostSwap ? `; host swap ${(m.hostSwap / GiB).toFixed(1)} GiB` : ''}`,
    '  time breakdown (per iteration):',
    ...rows.filter(([, v]) => v > 0).map(([k, v]) => `    ${k.padEnd(20)} ${v.toFixed(3).padStart(9)} s ${pct(v)}`),
  ].join('\n');
}

export async function run(argv: string[]): Promise<number> {
  try {
    const { values } = parse(argv, {
      ...PLAN_OPTIONS,
      'save-plan': { type: 'string' },
    }, USAGE);
    if (values.help) { console.log(USAGE); return 0; }
    const plan = planFromFlags(values as PlanFlags);
    const r = simulatePlan(plan);
    if (values['save-plan']) writeFileSync(values['save-plan'], JSON.stringify(plan, null, 2) + '\n');
    if (values.json) {
      console.log(JSON.stringify({
        model: plan.model, device: plan.device, devices: plan.devices, layout: r.layout,
        mfu: r.mfu, hfu: r.hfu, tokensPerSecond: r.tokensPerSecond, stepTimeSeconds: r.stepTimeSeconds,
        peakMemoryBytes: r.peakMemoryBytes, fitsMemory: r.memory.fits, flopsPerToken: r.flopsPerToken,
        bubbleFraction: r.bubbleFraction, stages: r.stages, time: r.time, memory: r.memory, options: { ...plan.options, calibration: plan.options.calibration },
      }));
    } else console.log(formatResult(r, `${plan.model} on ${plan.devices} × ${plan.device}`));
    return 0;
  } catch (e) {
    if (e instanceof UsageError || e instanceof PlanError) { console.error(`simulate: ${e.message}`); return 2; }
    throw e;
  }
}
