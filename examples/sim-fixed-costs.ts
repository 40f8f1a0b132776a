// Fixed per-kernel and per-message costs (src/sim/kernels.ts, docs/simulator.md "Fixed costs"): the validation
// and the paper's shape ranking before (no fixed kernel cost, the previous calibration) and after (kernels counted
// from the layer structure at the device's per-kernel cost, host-bound check, refitted calibration).
// Run: npx tsx examples/sim-fixed-costs.ts
import { getSpec } from '../src/device/specs.ts';
import { CALIBRATIONS } from '../src/sim/calibration.ts';
import { simulate } from '../src/sim/cost-model.ts';
import { bwdKernels, fwdKernels, layerKernels } from '../src/sim/kernels.ts';
import { modelCost } from '../src/sim/model-cost.ts';
import { PAPER_DEVICE, PAPER_MODEL, PAPER_OPTIMISED_OPTIONS, paperLayout, paperProgression } from '../src/sim/paper.ts';
import { paperShapeRanking, type RankingView } from '../src/sim/shape-ranking.ts';
import { groupErrors, meanAbsError, validationRows, type ValidationRow } from '../src/sim/validation.ts';
import { PUBLISHED_RUNS } from '../src/sim/workloads.ts';
import type { Calibration, SimOptions } from '../src/sim/types.ts';

/** The calibration of the model before fixed costs (commit 3f316a7), refitted by that model on the same fit rows. */
const BEFORE_CALIBRATIONS: Record<'gpu' | 'ascend', Calibration> = {
  gpu: { gemmScale: 0.76, a2aScale: 0.56, layerOverhead: 0 },
  ascend: { gemmScale: 0.56, a2aScale: 1, layerOverhead: 0 },
};
const BEFORE: Partial<SimOptions> = { fixedCosts: 'none' };
const pct = (x: number, d = 1) => `${x >= 0 ? '+' : ''}${(100 * x).toFixed(d)}%`;

const before = validationRows(BEFORE_CALIBRATIONS, BEFORE), after = validationRows();
console.log('validation: error per run, before (no fixed kernel cost) -> after (kernel counts x launch cost, refitted)');
after.forEach((r, i) => console.log(`  ${r.id.padEnd(22)} ${r.role.padEnd(8)} ${pct(before[i].error).padStart(7)} -> ${pct(r.error).padStart(7)}`));
/** held-out error without the stated goodput assumption */
const noGoodput = (rows: ValidationRow[]) => meanAbsError(rows.filter((r) => r.role === 'holdout').map((r) => {
  const g = PUBLISHED_RUNS.find((p) => p.id === r.id)?.goodput ?? 1;
  return { ...r, error: (r.predicted / g - r.measured) / r.measured };
}));
const gb = groupErrors(before), ga = groupErrors(after);
for (const k of ['fit', 'holdout', 'all'])
  console.log(`  mean |error| ${k.padEnd(8)} ${(100 * gb[k].meanAbsError).toFixed(2)}% -> ${(100 * ga[k].meanAbsError).toFixed(2)}%`);
console.log(`  held-out without goodput ${(100 * noGoodput(before)).toFixed(2)}% -> ${(100 * noGoodput(after)).toFixed(2)}%`);
console.log(`  calibration before ${JSON.stringify(BEFORE_CALIBRATIONS)}\n  calibration after  ${JSON.stringify(CALIBRATIONS)}`);

// the paper's progression and the fixed-cost share of the optimised step
const spec = getSpec(PAPER_DEVICE), mc = modelCost(PAPER_MODEL, 4096, false);
console.log('\nprogression (MFU):');
for (const s of paperProgression()) {
  const b = simulate(mc, paperLayout(s.devices), { ...s.options, ...BEFORE, calibration: BEFORE_CALIBRATIONS.ascend }, spec);
  const a = simulate(mc, paperLayout(s.devices), s.options, spec);
  console.log(`  ${s.name.padEnd(34)} ${(100 * b.mfu).toFixed(1)}% -> ${(100 * a.mfu).toFixed(1)}%  (fixed kernel cost ${(100 * a.time.overhead / a.time.total).toFixed(2)}% of the step)`);
}
const lk = layerKernels(PAPER_MODEL);
console.log(`kernels per layer (fwd + bwd): attention ${fwdKernels(lk.attn) + bwdKernels(lk.attn)}, MoE ${fwdKernels(lk.moe) + bwdKernels(lk.moe)}, dense MLP ${fwdKernels(lk.dense) + bwdKernels(lk.dense)}, heads ${fwdKernels(lk.head) + bwdKernels(lk.head)}`);
const opt = simulate(mc, paperLayout(6144), PAPER_OPTIMISED_OPTIONS, spec);
console.log(`optimised step: fixed kernel cost ${(opt.time.overhead).toFixed(3)} s of ${opt.time.total.toFixed(2)} s; launch ${spec.efficiency.launchOverhead * 1e6} us, host dispatch ${(spec.efficiency.hostDispatch ?? 0) * 1e6} us per kernel`);

// the shape ranking, three views, before and after
const views: RankingView[] = ['mfu', 'tokens', 'paper-layout'];
for (const seqLen of [4096, 8192]) {
  console.log(`\nshape ranking, seq ${seqLen} (23 shapes; band = held-out mean |error|)`);
  for (const view of views) {
    const b = paperShapeRanking({ seqLen, view, band: gb.holdout.meanAbsError, options: { ...PAPER_OPTIMISED_OPTIONS, ...BEFORE, calibration: BEFORE_CALIBRATIONS.ascend } });
    // fixed costs on, the previous calibration: the effect of the fixed costs alone, without the refit
    const m = paperShapeRanking({ seqLen, view, band: ga.holdout.meanAbsError, options: { ...PAPER_OPTIMISED_OPTIONS, calibration: BEFORE_CALIBRATIONS.ascend } });
    const a = paperShapeRanking({ seqLen, view });
    const line = (r: typeof a) => `rank ${String(r.paperRank).padStart(2)}, gap ${(100 * r.paperGapRelative).toFixed(2)}%, ${String(r.withinBand).padStart(2)} in band ${(100 * r.band).toFixed(2)}%, best ${r.ranked[0].hidden}x${r.ranked[0].layers}`;
    console.log(`  ${view.padEnd(12)} before:             ${line(b)}\n  ${''.padEnd(12)} fixed costs, no refit: ${line(m)}\n  ${''.padEnd(12)} after:              ${line(a)}`);
  }
}

// sensitivity (not a fit, nothing chosen from it): the Ascend per-kernel cost is [U]. How the primary ranking at seq 4096
// responds to it, with the current calibration held fixed.
console.log('\nsensitivity of the primary ranking (seq 4096) to the Ascend per-kernel cost, calibration held fixed:');
for (const us of [0, 10, 50, 200, 500]) {
  const sp = getSpec(PAPER_DEVICE);
  sp.efficiency.launchOverhead = us * 1e-6;
  const r = paperShapeRanking({ view: 'mfu', band: ga.holdout.meanAbsError, spec: sp });
  console.log(`  ${String(us).padStart(3)} us per kernel: paper shape rank ${r.paperRank}, gap ${(100 * r.paperGapRelative).toFixed(2)}%, best ${r.ranked[0].hidden}x${r.ranked[0].layers} at ${(100 * r.ranked[0].mfu).toFixed(1)}%`);
}
