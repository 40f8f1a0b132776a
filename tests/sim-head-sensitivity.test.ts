// The paper's depth choice against the output heads' cost (src/sim/head-sensitivity.ts): the default model
// reproduces the paper's "61 layers ~15% faster than a 66-layer variant", and a cheaper head that would rank the
// paper's shape first cannot reproduce the paper's two MFU endpoints or that 15%.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { headCostSensitivity, paperDepthComparison, PAPER_DEPTH_ADVANTAGE } from '../src/sim/head-sensitivity.ts';

const test = suite('sim-head-sensitivity');

test('at the paper layout the paper shape beats the 66-layer variant by ~15% tokens/s, as the paper reports', () => {
  const { rivals } = paperDepthComparison();
  // the only 66-layer shape within 718B ± 5% in the paper's candidate grid
  assert.equal(rivals.map((r) => `${r.hidden}x${r.layers}`), ['7168x66']);
  // measured 15.7% at the time of writing; tolerance ±5 points around the reported ~15%
  assert.ok(Math.abs(rivals[0].advantage - PAPER_DEPTH_ADVANTAGE) < 0.05, `${rivals[0].advantage}`);
  // each shape at its own fastest layout the two are within a few percent (measured +0.8%): the ~15% needs the
  // paper's layout (16 stages of 4 layers, which 66 layers + MTP overflow)
  assert.ok(Math.abs(rivals[0].advantageBestLayouts) < 0.05, `${rivals[0].advantageBestLayouts}`);
});

test('a head cheap enough to balance 61 layers on PP16 ranks the paper shape first but misses the endpoints', () => {
  const [calibrated, cheap] = headCostSensitivity([null, 1]);
  // default: heads ~2.9 layers of time at micro-batch 2, heaviest stage 4.9 layer-equivalents against 4 per stage
  assert.ok(calibrated.endpointsWithin2Points);
  assert.ok(calibrated.headLayerEquivalents > 2.5 && calibrated.headLayerEquivalents < 3.2, `${calibrated.headLayerEquivalents}`);
  assert.ok(calibrated.heaviestStage > 4.5, `${calibrated.heaviestStage}`);
  assert.ok(calibrated.rankPaperLayout > 5 && calibrated.rankAnyLayout > 5);
  // heads at the uncalibrated GEMM curve: the pipeline balances (4 layers on every stage) and 7680 x 61 ranks first ...
  assert.ok(Math.abs(cheap.heaviestStage - 4) < 1e-9, `${cheap.heaviestStage}`);
  assert.is(cheap.rankAnyLayout, 1);
  assert.is(cheap.rankPaperLayout, 1);
  // ... but no refit reaches both endpoints within 2 points (baseline measured 15.7% vs 18.9%) and the
  // 61-vs-66 advantage grows far beyond the reported ~15% (measured 42%)
  assert.not.ok(cheap.endpointsWithin2Points);
  assert.ok(cheap.baselineMfu < 0.169, `${cheap.baselineMfu}`);
  assert.ok(cheap.depthAdvantage > 0.3, `${cheap.depthAdvantage}`);
});

test.run();
