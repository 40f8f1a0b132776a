// The simulator's stage split written as a framework layout (src/sim/pp-layout.ts): Megatron's
// --pipeline-model-parallel-layout and MindSpeed's --noop-layers build exactly the simulated stages.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { expandLayout, layoutChunks, megatronLayout, noopLayers, type Chunk } from '../src/sim/pp-layout.ts';
import { stageSplit } from '../src/sim/schedule.ts';
import { exportArgs } from '../src/sim/export.ts';
import { PlanError, planFromFlags, simulatePlan } from '../src/sim/plan.ts';
import { resolveConfig } from '../src/model/config.ts';

const test = suite('sim-pp-layout');

const perStage = (chunks: Chunk[], pp: number) =>
  Array.from({ length: pp }, (_, p) => chunks.filter((_, c) => c % pp === p).reduce((a, c) => a + c.decoder + c.mtp, 0));
const count = (texts: string[], ch: string) => texts.join('').split('').filter((x) => x === ch).length;

test("Pangu 61 + MTP on PP16 VPP2 with the simulator's split (4 per stage, 2 on the last)", () => {
  const chunks = layoutChunks(61, 1, 16, 2, { per: 4, last: 2 });
  assert.equal(perStage(chunks, 16), [...new Array(15).fill(4), 2]);
  const s = megatronLayout(chunks);
  assert.is(s, 'Ett|(tt|)*14,t|(tt|)*15,mL');
  const texts = expandLayout(s);
  assert.is(texts.length, 32);
  assert.is(count(texts, 't'), 61);
  assert.is(count(texts, 'm'), 1);
  assert.ok(texts[0].startsWith('E') && texts[31].endsWith('L'));
  // stage 15 = chunk 15 (one decoder layer) + chunk 31 (MTP + loss); MindSpeed pads chunk 15 and 31 with no-ops
  assert.equal(noopLayers(chunks), { numLayers: 64, perChunk: 2, noop: [31, 62, 63] });
});

test("Megatron's documented DeepSeek-V3 layout expands to its table (61 decoder layers + 1 MTP on PP16 VPP2)", () => {
  const texts = expandLayout('Et*3|(tt|)*29,m|L');
  assert.is(texts.length, 32);
  assert.is(texts[0], 'Ettt');
  assert.is(texts[30], 'm');
  assert.is(texts[31], 'L');
  assert.is(count(texts, 't'), 61);
});

test('property: every split round-trips through the layout string and the no-op padding', () => {
  fc.assert(fc.property(
    fc.integer({ min: 1, max: 96 }), fc.integer({ min: 0, max: 2 }), fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: 4 }),
    fc.double({ min: 0, max: 6, noNaN: true }),
    (decoder, mtp, pp, vpp, head) => {
      const n = decoder + mtp;
      const split = stageSplit(n, pp, vpp, head);
      const chunks = layoutChunks(decoder, mtp, pp, vpp, split);
      assert.is(chunks.length, pp * vpp);
      assert.is(chunks.reduce((a, c) => a + c.decoder, 0), decoder);
      assert.is(chunks.reduce((a, c) => a + c.mtp, 0), mtp);
      const stages = perStage(chunks, pp);
      if (pp > 1) {
        assert.is(stages[pp - 1], Math.min(split.last, n));
        for (const c of stages.slice(0, -1)) assert.ok(c <= split.per, `${stages} per ${split.per}`);
      }
      // MTP layers come after every decoder layer in model order
      const order = chunks.flatMap((c) => [...'t'.repeat(c.decoder), ...'m'.repeat(c.mtp)]).join('');
      assert.ok(!/m.*t/.test(order), order);
      // the string expands back to the same chunks
      const texts = expandLayout(megatronLayout(chunks));
      assert.equal(texts.map((t) => t.replace(/[EL]/g, '')), chunks.map((c) => 't'.repeat(c.decoder) + 'm'.repeat(c.mtp)));
      assert.ok(texts[0].startsWith('E') && texts[texts.length - 1].endsWith('L'));
      // no-op padding: every chunk gets the same number of slots, the real layers are exactly the decoder layers
      const nl = noopLayers(chunks);
      assert.is(nl.numLayers, nl.perChunk * pp * vpp);
      assert.is(nl.numLayers - nl.noop.length, decoder);
      assert.is(new Set(nl.noop).size, nl.noop.length);
      assert.ok(nl.noop.every((i) => i >= 0 && i < nl.numLayers));
    }), { numRuns: 300, seed: 7 });
});

test('export writes the split the simulation assumed (Megatron layout and MindSpeed no-ops)', () => {
  // the paper's plan: 4 layers on each of stages 0-14, 2 (one decoder layer + MTP) + the heads on stage 15
  const paper = simulatePlan(planFromFlags({})).stages;
  assert.is(paper.perStage, 4);
  assert.is(paper.lastStage, 2);
  for (const flags of [{}, { pp: '8', vpp: '1', tp: '8', ep: '32' }, { model: 'deepseek-v3-671b', device: 'h100-sxm', devices: '1024', tp: '1', pp: '16', vpp: '1', ep: '64' }]) {
    const plan = planFromFlags(flags);
    const st = simulatePlan(plan).stages, pp = plan.layout.pp;
    const meg = exportArgs(plan, 'megatron').args.find((a) => a.startsWith('--pipeline-model-parallel-layout'))!;
    const texts = expandLayout(meg.split('"')[1]);
    assert.is(texts.length, pp * plan.layout.vpp);
    const stages = Array.from({ length: pp }, (_, p) => texts.filter((_, c) => c % pp === p).reduce((a, t) => a + count([t], 't') + count([t], 'm'), 0));
    assert.is(stages[pp - 1], st.lastStage, JSON.stringify(flags));
    assert.ok(Math.max(...stages.slice(0, -1)) <= st.perStage, JSON.stringify(flags));
    // MindSpeed: the padded --num-layers minus the no-op layers is the model's decoder count
    const ms = exportArgs(plan, 'mindspeed').args;
    const nl = Number(ms.find((a) => a.startsWith('--num-layers '))!.split(' ')[1]);
    const noop = ms.find((a) => a.startsWith('--noop-layers'))?.split(' ')[1].split(',').length ?? 0;
    assert.is(nl - noop, resolveConfig(plan.model, plan.overrides ?? {}).numLayers);
  }
});

test('a plan with the exported layout string simulates the same step as the simulated split (round trip)', () => {
  for (const flags of [{}, { pp: '8', vpp: '1', tp: '8', ep: '32' }, { model: 'deepseek-v3-671b', device: 'h100-sxm', devices: '1024', tp: '1', pp: '16', vpp: '1', ep: '64' }]) {
    const plan = planFromFlags(flags);
    const layout = exportArgs(plan, 'megatron').args.find((a) => a.startsWith('--pipeline-model-parallel-layout'))!.split('"')[1];
    const again = planFromFlags({ ...flags, 'pp-layout': layout });
    assert.is(again.layout.vpp, plan.layout.vpp);
    assert.is(simulatePlan(again).stepTimeSeconds, simulatePlan(plan).stepTimeSeconds, JSON.stringify(flags));
  }
});

test("Megatron's documented DeepSeek-V3 layout on Pangu: 5 layers on stage 0, slower than the simulator's split", () => {
  const own = simulatePlan(planFromFlags({}));
  const doc = simulatePlan(planFromFlags({ 'pp-layout': 'Et*3|(tt|)*29,m|L' }));
  assert.equal(doc.stages.perStage, 5);
  assert.equal(doc.stages.lastStage, 2);
  // measured 16.66 s vs 16.33 s per step (29.6% vs 30.2% MFU)
  assert.ok(doc.stepTimeSeconds > own.stepTimeSeconds, `${doc.stepTimeSeconds} vs ${own.stepTimeSeconds}`);
  // the export passes the user's layout through
  assert.ok(exportArgs(planFromFlags({ 'pp-layout': 'Et*3|(tt|)*29,m|L' }), 'megatron').args.includes('--pipeline-model-parallel-layout "Et*3|(tt|)*29,m|L"'));
});

test('a bad layout string: every problem listed before any work; DualPipe refused', () => {
  try {
    planFromFlags({ 'pp-layout': 'Et*3|(tt|)*28,m|Lx' });
    assert.unreachable('should throw');
  } catch (e) {
    assert.instance(e, PlanError);
    const p = (e as PlanError).problems.join('\n');
    for (const x of ['only E, t, m, L', '31 chunks; PP × VPP = 16 × 2 = 32', '59 decoder layers (t); the model has 61', 'L (loss, output heads) must close the last chunk'])
      assert.ok(p.includes(x), `${x} in\n${p}`);
  }
  assert.throws(() => planFromFlags({ 'pp-layout': 'Et*3|(tt|)*29,m|L', schedule: 'dualpipe' }), /DualPipe/);
  assert.throws(() => planFromFlags({ model: 'deepseek-v3-671b', device: 'h100-sxm', devices: '1024', 'pp-layout': 'E|L' }), /needs --pp/);
});

test.run();
