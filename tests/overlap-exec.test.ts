// Executed adaptive pipe overlap (src/parallel/overlap): an EP=8 × PP=4 pipelined MoE step issued op by
// op onto 32 simulated Ascend 910B NPUs, overlap off vs on, measured on the timeline (simulated time,
// deterministic). Setting: docs/overlap.md (Pangu layer as one TP=8+SP rank sees it, 4 layers per
// stage, M=16, uniform top-8 routing).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { compareOverlapModes, order1F1B, overlapPlacement, planOverlapStep, layerCosts, PANGU_OVERLAP_LAYER, type OverlapLayerShape } from '../src/parallel/overlap/index.ts';
import { getSpec } from '../src/device/specs.ts';

const test = suite('overlap executor');
const near = (a: number, b: number, rtol: number, what: string) =>
  assert.ok(Math.abs(a - b) <= rtol * Math.max(Math.abs(b), 1e-12), `${what}: ${a} vs ${b} (rtol ${rtol})`);

test('placement: 32 distinct NPUs, each EP group = 2 nodes × 4', () => {
  const p = overlapPlacement(4, 8, 8);
  assert.is(new Set(p.flat()).size, 32);
  for (const ranks of p) {
    const nodes = ranks.map((r) => Math.floor(r / 8));
    assert.is(new Set(nodes).size, 2);
    assert.is(nodes.filter((n) => n === nodes[0]).length, 4);
  }
});

test('fb-overlap 1F1B order: warm-up 2(p−r−1)+1, every micro-batch F then B once', () => {
  for (let r = 0; r < 4; r++) {
    const o = order1F1B(4, 16, r, true);
    assert.is(o.findIndex((a) => a.kind === 'B'), 2 * (4 - r - 1) + 1 + 1); // warm-up forwards, then the first steady F
    for (let m = 0; m < 16; m++) {
      const f = o.findIndex((a) => a.kind === 'F' && a.mb === m), b = o.findIndex((a) => a.kind === 'B' && a.mb === m);
      assert.ok(f >= 0 && b > f && o.filter((a) => a.mb === m).length === 2, `rank ${r} mb ${m}`);
    }
  }
});

test('both modes plan the same ops', () => {
  const tiny: OverlapLayerShape = { ...PANGU_OVERLAP_LAYER, tokens: 64 };
  const spec = getSpec('ascend-910b');
  const costs = overlapPlacement().map((ranks, s) => layerCosts(tiny, spec, ranks.map((r) => Math.floor(r / 8)), 10, 2, { zipf: 1, seed: s }));
  const ids = (mode: 'on' | 'off') => planOverlapStep({ pp: 4, microBatches: 10, layersPerStage: 2, costs, p2pBytes: 1e6, mode }).flat().map((o) => o.id).sort();
  const on = ids('on'), off = ids('off');
  assert.is(on.length, off.length);
  assert.equal(on, off);
  assert.is(new Set(on).size, on.length);
});

const r = compareOverlapModes({ microBatches: 16, layersPerStage: 4 });
const { off, on, pure } = r;

test('same work in both modes: compute and EP a2a busy time, op counts', () => {
  near(on.stats.computeBusy, off.stats.computeBusy, 1e-9, 'compute busy');
  near(on.stats.epCommBusy, off.stats.epCommBusy, 1e-9, 'EP a2a busy');
  near(on.stats.p2pBusy, off.stats.p2pBusy, 1e-9, 'PP p2p busy');
  assert.is(on.stats.computeOps, off.stats.computeOps);
  assert.is(on.stats.epCommOps, off.stats.epCommOps);
  assert.is(on.ops, off.ops);
  // 32 NPUs × 16 mb × 4 layers × (3 F + 5 B compute ops: dX/dW split); 4 a2a phases each way
  assert.is(off.stats.computeOps, 32 * 16 * 4 * 8);
  assert.is(off.stats.epCommOps, 32 * 16 * 4 * 8);
});

test('overlap off hides nothing; its steady pass pair matches the pure model', () => {
  assert.ok(off.stats.steady.fraction < 1e-9 && off.stats.whole.fraction < 1e-9, `off hidden ${off.stats.whole.fraction}`);
  for (const s of off.stats.stages) near(s.steadyPairTime, pure[s.stage].nonePairTime, 0.01, `stage ${s.stage} off pair vs pure none`);
});

test('overlap on: ≥ 80% of EP a2a hidden in the steady state (measured 99.0%)', () => {
  assert.ok(on.stats.steady.fraction >= 0.8, `steady hidden ${on.stats.steady.fraction}`);
  near(on.stats.steady.fraction, 0.990, 0.01, 'steady hidden (pinned)');
  for (const s of on.stats.stages) assert.ok(s.steady.fraction >= 0.9, `stage ${s.stage} steady ${s.steady.fraction}`);
  // whole step: warm-up forwards only self-overlap (shared expert), so less is hidden
  near(on.stats.whole.fraction, 0.893, 0.02, 'whole-step hidden (pinned)');
  assert.ok(on.stats.whole.fraction < on.stats.steady.fraction);
});

test('overlap on is faster, and close to the pure model', () => {
  assert.ok(on.stats.stepTime < 0.85 * off.stats.stepTime, `step ${on.stats.stepTime} vs ${off.stats.stepTime}`);
  assert.ok(on.stats.bubble < off.stats.bubble, 'idle compute shrinks: exposed a2a was idle compute');
  // without the exposed a2a, both are 1F1B's (p−1)/(M+p−1) = 15.8% (measured 16.6% off, 15.3% on)
  for (const x of [off, on]) near(x.stats.ppBubble, 3 / 19, 0.08, 'pipeline bubble');
  for (const s of on.stats.stages) {
    assert.ok(Math.abs(s.steady.fraction - pure[s.stage].steadyHidden) <= 0.03, `stage ${s.stage} hidden vs pure ${pure[s.stage].steadyHidden}`);
    // steady period of one F+B pair (measured 39.5 ms) vs the pure list schedule of the pair (39.9 ms)
    near(s.steadyPairTime, pure[s.stage].fbPairTime, 0.03, `stage ${s.stage} pair time vs pure fb`);
  }
});

test('Zipf-1.2 routing: imbalance exposes a2a on the lightly loaded EP ranks (pinned 71%; pure model 100%)', () => {
  const z = compareOverlapModes({ microBatches: 12, layersPerStage: 2, routing: { zipf: 1.2, seed: 1 } });
  near(z.on.stats.computeBusy, z.off.stats.computeBusy, 1e-9, 'compute busy');
  near(z.on.stats.steady.fraction, 0.714, 0.02, 'steady hidden (pinned)');
  for (const p of z.pure) assert.ok(p.steadyHidden > 0.999, 'the pure model (slowest rank only) predicts all hidden');
  assert.ok(z.on.stats.stepTime < 0.75 * z.off.stats.stepTime, 'overlap still pays more under imbalance');
});

test.run();
