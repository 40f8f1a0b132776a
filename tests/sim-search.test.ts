// Configuration search (src/sim/search.ts, layout.ts): every result divides evenly and fits in
// memory, enumeration covers only valid layouts, variants respect the parameter budget.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { getSpec } from '../src/device/specs.ts';
import { forEachLayout, layoutProblems } from '../src/sim/layout.ts';
import { memoryBreakdown } from '../src/sim/memory.ts';
import { modelCost } from '../src/sim/model-cost.ts';
import { PAPER_MODEL, PAPER_OPTIMISED_OPTIONS } from '../src/sim/paper.ts';
import { bestPerVariant, runSearch, variantConfig } from '../src/sim/search.ts';
import { defaultSchedule } from '../src/sim/schedule.ts';
import { simulate } from '../src/sim/cost-model.ts';
import { paperLayout } from '../src/sim/paper.ts';
import { paperShapeRanking } from '../src/sim/shape-ranking.ts';

const test = suite('sim-search');
const spec = getSpec('ascend-910b');

test('every enumerated layout is valid', () => {
  let n = 0;
  forEachLayout(PAPER_MODEL, 512, spec, { seqLen: 4096, globalBatch: 1024 }, (l) => {
    n++;
    assert.equal(layoutProblems(PAPER_MODEL, l, 512, spec), [], JSON.stringify(l));
  });
  assert.ok(n > 100, `${n} layouts`);
});

test('search results divide evenly, fit memory and respect the budget', () => {
  const out = runSearch({
    base: PAPER_MODEL, space: { hidden: [7168, 7680], layers: [58, 61], experts: [128, 256], expertSize: [2048, 4096], topk: [8], heads: [128] },
    modelParams: 718e9, tolerance: 0.06, devices: 2048, spec, seqLen: 4096, globalBatch: 2048, options: PAPER_OPTIMISED_OPTIONS, top: 20,
  });
  assert.ok(out.variants >= 2 && out.evaluated > out.feasible && out.feasible > 0, JSON.stringify({ ...out, columns: 0, top: 0 }));
  assert.ok(out.configsPerSecond > 0);
  for (const r of out.top) {
    assert.ok(Math.abs(r.totalParams / 718e9 - 1) <= 0.06);
    const cfg = variantConfig(PAPER_MODEL, r);
    const l = { tp: r.tp, pp: r.pp, vpp: r.vpp, ep: r.ep, cp: r.cp, dp: r.dp, microBatch: r.microBatch, globalBatch: 2048, seqLen: 4096 };
    assert.equal(layoutProblems(cfg, l, 2048, spec), []);
    const o = r.recompute === 'full' ? { ...PAPER_OPTIMISED_OPTIONS, recompute: 'full' as const } : PAPER_OPTIMISED_OPTIONS;
    const mem = memoryBreakdown(modelCost(cfg, 4096, false), l, o, spec, defaultSchedule(l.pp, l.vpp), 2048 / (l.dp * l.microBatch));
    assert.ok(mem.fits && mem.total <= spec.hbmBytes);
  }
  // sorted by MFU, and the per-variant ranking covers every feasible variant
  for (let i = 1; i < out.top.length; i++) assert.ok(out.top[i - 1].mfu >= out.top[i].mfu);
  assert.ok(bestPerVariant(out).length <= out.variants);
});

test('MindSpeed hierarchical all-to-all all-gathers every token: its cost grows with the EP group, unlike node dedup', () => {
  const mc = modelCost(PAPER_MODEL, 4096, false);
  const base = { ...PAPER_OPTIMISED_OPTIONS, adaptivePipeOverlap: false };
  const ep = (n: number, mode: 'allgather' | 'dedup') => simulate(mc, { ...paperLayout(6144), ep: n }, { ...base, hierarchicalMode: mode }, spec).time.epComm;
  assert.ok(ep(256, 'allgather') > 3 * ep(32, 'allgather'), `${ep(256, 'allgather')} vs ${ep(32, 'allgather')}`);
  assert.ok(ep(256, 'allgather') > 2 * ep(256, 'dedup'));
  // at the paper's EP32 (4 nodes, k = 8) the two are within 25%
  assert.ok(Math.abs(ep(32, 'allgather') / ep(32, 'dedup') - 1) < 0.25, `${ep(32, 'allgather')} vs ${ep(32, 'dedup')}`);
});

test('the paper shape (7680 x 61) is near the top: within the simulator error band of the best shape', () => {
  const rk = paperShapeRanking();
  assert.is(rk.ranked.length, 23);
  assert.is(rk.view, 'mfu');
  // band = held-out mean |error| of the validation (4.61% at the time of writing)
  assert.ok(rk.band > 0 && rk.band < 0.05, `band ${rk.band}`);
  // measured at the time of writing (with fixed kernel costs): rank 16 of 23, 1.86 points (4.52%) below the best
  // (6656 x 68); 17 of 23 within the band. Before the fixed costs: rank 21, 1.86 points (4.50%), 21 within 4.68%.
  assert.ok(rk.nearTop, `gap ${rk.paperGapRelative} band ${rk.band}`);
  assert.ok(rk.paperGapPoints < 2.0, `${rk.paperGapPoints}`);
  assert.ok(Math.abs(rk.paperGapRelative - 0.0452) < 0.002, `${rk.paperGapRelative}`);
  assert.is(rk.ranked[0].hidden * 1000 + rk.ranked[0].layers, 6656068);
  const spread = rk.ranked[0].mfu - rk.ranked[rk.ranked.length - 1].mfu;
  assert.ok(spread < 0.03, `spread ${spread}`);
  // the search does not single the paper shape out: most shapes are inside the band
  assert.ok(rk.withinBand >= 15, `${rk.withinBand}`);
});

test('secondary views: tokens/s at 718B and the paper layout family do not put the paper shape on top either', () => {
  const band = 0.0461;
  const tok = paperShapeRanking({ view: 'tokens', band });
  // measured: rank 17, 4.62% below the best (8192 x 60): just outside the band (4.61%)
  assert.is(tok.ranked[0].hidden, 8192);
  assert.ok(tok.paperRank >= 10 && tok.paperGapRelative < 0.05, `${tok.paperRank} ${tok.paperGapRelative}`);
  const fam = paperShapeRanking({ view: 'paper-layout', band });
  // measured: rank 11 of 23, 16.2% below 7680 x 60 (pipeline granularity: 61 + MTP + heads over 16 stages)
  assert.ok(fam.ranked.every((x) => x.layout.startsWith('TP8 PP16 VPP2 EP32')));
  assert.is(fam.ranked[0].hidden * 1000 + fam.ranked[0].layers, 7680060);
  assert.ok(!fam.nearTop && fam.paperGapRelative > 0.1, `${fam.paperGapRelative}`);
});

test.run();
