// Reproduces the paper's system progression (Pangu Ultra MoE, arXiv 2505.04519): from the baseline
// (4K NPUs, 18.9% MFU) to the optimised system (6K NPUs, 30.0%), one optimisation at a time, then
// ranks the paper's candidate shapes with the configuration search.
// Run: npx tsx examples/sim-paper-progression.ts
import { getSpec } from '../src/device/specs.ts';
import { CALIBRATIONS } from '../src/sim/calibration.ts';
import { simulate } from '../src/sim/cost-model.ts';
import { modelCost } from '../src/sim/model-cost.ts';
import { ASSUMPTIONS, PAPER_DEVICE, PAPER_MODEL, PAPER_OPTIMISED_OPTIONS, paperLayout, paperProgression } from '../src/sim/paper.ts';
import { enumerateVariants, PAPER_SHAPE_SPACE } from '../src/sim/search.ts';
import { paperShapeRanking } from '../src/sim/shape-ranking.ts';
import { headCostSensitivity, paperDepthComparison, PAPER_DEPTH_ADVANTAGE } from '../src/sim/head-sensitivity.ts';

const spec = getSpec(PAPER_DEVICE);
const mc = modelCost(PAPER_MODEL, 4096, false);
const pad = (s: string | number, n: number) => String(s).padStart(n);

console.log('Pangu Ultra MoE 718B: system progression (simulated)\n');
console.log(`${'step'.padEnd(34)} ${pad('NPUs', 5)} ${pad('MFU %', 6)} ${pad('Δ pts', 6)} ${pad('Mtok/s', 7)} ${pad('step s', 7)} ${pad('mem GiB', 8)}  paper`);
let prev = 0;
for (const s of paperProgression()) {
  const r = simulate(mc, paperLayout(s.devices), s.options, spec);
  const d = prev ? (100 * (r.mfu - prev)).toFixed(1) : '';
  console.log(`${s.name.padEnd(34)} ${pad(s.devices, 5)} ${pad((100 * r.mfu).toFixed(1), 6)} ${pad(d, 6)} ${pad((r.tokensPerSecond / 1e6).toFixed(3), 7)} ${pad(r.stepTimeSeconds.toFixed(2), 7)} ${pad((r.peakMemoryBytes / 2 ** 30).toFixed(1), 8)}  ${s.paperMfu ? (100 * s.paperMfu).toFixed(1) + '%' : ''}`);
  prev = r.mfu;
}
console.log(`\ncalibration (fitted on the two endpoints): gemmScale ${CALIBRATIONS.ascend.gemmScale}, a2aScale ${CALIBRATIONS.ascend.a2aScale}; fixed costs: ${spec.efficiency.launchOverhead * 1e6} us per kernel (src/sim/kernels.ts), not fitted`);
console.log('assumptions:\n' + ASSUMPTIONS.map((a) => `  - ${a}`).join('\n'));

// Shape search: 256 × 2048 experts top-8 (fixed by the paper's pilot study), hidden × depth within 718B ± 5%,
// every layout on 6144 NPUs with the optimised system, ranked by the best MFU of each shape (src/sim/shape-ranking.ts).
// "Near the top" = within the simulator's held-out mean |error| (relative) of the best shape's MFU: the
// simulator cannot tell such a shape from the top one.
for (const seqLen of [4096, 8192]) {
  const rk = paperShapeRanking({ seqLen });
  console.log(`\nshape search, seq ${seqLen}: ${rk.ranked.length} shapes, ${rk.evaluated} configurations, ${Math.round(rk.configsPerSecond)} configs/s`);
  console.log(`${'rank'.padStart(4)} ${'hidden'.padStart(6)} ${'layers'.padStart(6)} ${'total B'.padStart(8)} ${'MFU %'.padStart(6)} ${'Mtok/s'.padStart(7)}  best layout`);
  const chosen = rk.paperRank - 1;
  rk.ranked.forEach((x, i) => {
    if (i < 6 || i === chosen) console.log(`${pad(i + 1, 4)} ${pad(x.hidden, 6)} ${pad(x.layers, 6)} ${pad((x.totalParams / 1e9).toFixed(1), 8)} ${pad((100 * x.mfu).toFixed(2), 6)} ${pad((x.tokensPerSecond / 1e6).toFixed(3), 7)}  ${x.layout}${i === chosen ? '   <- paper (7680 × 61)' : ''}`);
  });
  const spread = 100 * (rk.ranked[0].mfu - rk.ranked[rk.ranked.length - 1].mfu);
  console.log(`paper shape: rank ${rk.paperRank} of ${rk.ranked.length}, ${rk.paperGapPoints.toFixed(2)} MFU points (${(100 * rk.paperGapRelative).toFixed(1)}%) below the best; `
    + `error band ${(100 * rk.band).toFixed(1)}% (held-out mean |error|) -> ${rk.nearTop ? 'near the top' : 'NOT near the top'}; `
    + `${rk.withinBand} of ${rk.ranked.length} shapes are within the band, all within ${spread.toFixed(1)} points`);
  // secondary views (src/sim/shape-ranking.ts): tokens/s scaled to 718B parameters, and MFU over the paper's
  // layout family only (TP8 PP16 VPP2 EP32, any micro-batch). The primary view is MFU over every layout.
  for (const view of ['tokens', 'paper-layout'] as const) {
    const v = paperShapeRanking({ seqLen, view, band: rk.band });
    console.log(`  view ${view.padEnd(12)}: paper shape rank ${v.paperRank} of ${v.ranked.length}, ${(100 * v.paperGapRelative).toFixed(1)}% below the best `
      + `(${v.ranked[0].hidden} × ${v.ranked[0].layers}, ${v.ranked[0].layout}); ${v.withinBand} shapes within the band`);
  }
}

// The same shapes at the paper's own layout (TP8 PP16 VPP2 EP32, micro-batch 2): here the ranking is set by how the
// pipeline layers (+1 MTP) and the output heads (main + MTP, ~3.5 layers of work) divide into the 16 stages.
const atPaper = enumerateVariants({ base: PAPER_MODEL, space: PAPER_SHAPE_SPACE, modelParams: 718e9, tolerance: 0.05 } as Parameters<typeof enumerateVariants>[0])
  .map(({ v, cfg }) => ({ v, r: simulate(modelCost(cfg, 4096, false), paperLayout(6144), PAPER_OPTIMISED_OPTIONS, spec) }))
  .sort((a, b) => b.r.mfu - a.r.mfu);
const chosenAt = atPaper.findIndex((x) => x.v.hidden === 7680 && x.v.layers === 61);
console.log(`\nat the paper's layout (TP8 PP16 VPP2 EP32): ${atPaper.slice(0, 4).map((x) => `${x.v.hidden}×${x.v.layers} ${(100 * x.r.mfu).toFixed(1)}%`).join(', ')}, ...`);
const st = atPaper[chosenAt].r.stages;
console.log(`paper shape: rank ${chosenAt + 1} of ${atPaper.length} (${(100 * atPaper[chosenAt].r.mfu).toFixed(1)}%): ${mc.layers} pipeline layers (61 + MTP) + heads worth `
  + `${st.headLayerEquivalents.toFixed(2)} layers of time over 16 stages leave the heaviest stage at ${Math.max(st.perStage, st.lastStage + st.headLayerEquivalents).toFixed(2)} layer-equivalents `
  + `(${st.perStage} layers, last stage ${st.lastStage} + heads) against a mean of ${((mc.layers + st.headLayerEquivalents) / 16).toFixed(2)}`);

// The paper's own depth comparison (digest of the PDF, docs/simulator.md): its 61-layer "model 7" ran ~15% faster
// than a 66-layer variant. At the paper's layout the simulator gives:
for (const r of paperDepthComparison().rivals) {
  console.log(`\n7680 × 61 vs ${r.hidden} × ${r.layers} (${(r.totalParams / 1e9).toFixed(0)}B) at the paper's layout: `
    + `${(100 * r.advantage).toFixed(1)}% more tokens/s (paper: ~${100 * PAPER_DEPTH_ADVANTAGE}%); each at its fastest layout: ${(100 * r.advantageBestLayouts).toFixed(1)}%`);
}

// Head-cost sensitivity (src/sim/head-sensitivity.ts): the output heads' GEMMs at a scale of their own, the
// calibration refitted on the two endpoints for each row.
console.log('\nhead GEMM scale | fit: gemmScale  baseline  optimised  endpoints | heads (layers)  heaviest stage | rank any layout  paper layout | 61 vs 66 (paper layout, best layouts)');
for (const r of headCostSensitivity([null, 0.7, 0.82, 1])) {
  console.log(`${(r.headGemmScale === null ? 'fitted (' + r.calibration.gemmScale.toFixed(2) + ')' : r.headGemmScale.toFixed(2)).padStart(15)} | `
    + `${r.calibration.gemmScale.toFixed(2).padStart(14)}  ${(100 * r.baselineMfu).toFixed(1).padStart(7)}%  ${(100 * r.optimisedMfu).toFixed(1).padStart(8)}%  `
    + `${(r.endpointsWithin2Points ? 'ok' : 'MISS').padStart(9)} | ${r.headLayerEquivalents.toFixed(2).padStart(14)}  ${r.heaviestStage.toFixed(2).padStart(14)} | `
    + `${String(r.rankAnyLayout).padStart(15)}  ${String(r.rankPaperLayout).padStart(12)} | ${(100 * r.depthAdvantage).toFixed(1)}%, ${(100 * r.depthAdvantageBestLayouts).toFixed(1)}%`);
}
