// Parallel layout parsing and validation (src/parallel/layout.ts) and the pure all-to-all dispatch
// bookkeeping (src/parallel/ep/dispatch-plan.ts, moe-semantics §8). Pure numbers: exact asserts.
import { forEachBackend, assert } from './support/backends.ts';
import { resolveConfig } from '../src/model/config.ts';
import { parseLayout, layoutProblems, resolveLayout, LayoutError } from '../src/parallel/layout.ts';
import { chunkOrders, planAllToAllDispatch, offRankRows, localExperts } from '../src/parallel/ep/dispatch-plan.ts';

const model = resolveConfig('tiny', { hiddenSize: 32, numHeads: 2, numKvHeads: 2, vocabSize: 64, moe: { numExperts: 16 } });

forEachBackend('parallel layout', (test) => {
  test('parses key=value lists, missing sizes are 1', () => {
    assert.equal(parseLayout('tp=2,ep=4,dp=2'), { tp: 2, cp: 1, dp: 2, pp: 1, ep: 4, etp: 1 });
    assert.equal(parseLayout('ep=8 dp=8'), { tp: 1, cp: 1, dp: 8, pp: 1, ep: 8, etp: 1 });
  });

  test('parse errors list every problem', () => {
    try { parseLayout('tp=0,xx=2,ep'); assert.unreachable(); } catch (e) {
      assert.instance(e, LayoutError);
      assert.is((e as LayoutError).problems.length, 3);
    }
  });

  test('resolves world and expert-DP (Megatron folding)', () => {
    const l = resolveLayout('ep=4,dp=8', { model, clusterDevices: 8 });
    assert.is(l.world, 8);
    assert.is(l.edp, 2);
    assert.is(resolveLayout('tp=2,ep=2,dp=2', { model }).edp, 2);
  });

  test('every problem of an invalid layout is listed before any work', () => {
    const bad = resolveConfig('tiny', { hiddenSize: 32, numHeads: 3, numKvHeads: 3, vocabSize: 63, moe: { numExperts: 12 } });
    const p = layoutProblems(parseLayout('tp=2,ep=8,dp=4,cp=2'), { model: bad, clusterDevices: 8, globalBatch: 6, seqLen: 6 });
    const want = ['cluster has only 8', 'numExperts 12 is not divisible by ep=8', 'numHeads 3', 'vocabSize 63', 'seqLen 6 is not divisible by 2·cp', 'global batch 6 is not divisible by dp'];
    for (const w of want) assert.ok(p.some((x) => x.includes(w)), `missing '${w}' in:\n${p.join('\n')}`);
    const ep = layoutProblems(parseLayout('ep=3,dp=4'), { model });
    assert.ok(ep.some((x) => x.includes('must divide tp·cp·dp')), ep.join('\n'));
    assert.throws(() => resolveLayout('tp=2,dp=2', { model, supported: { tp: 1 } }), /tp=2 is not implemented/);
  });
}, ['cpu']);

forEachBackend('parallel all-to-all dispatch plan', (test) => {
  test('chunk orders are Megatron sort/restore permutations', () => {
    const { sortChunks, restoreChunks } = chunkOrders(2, 3);
    assert.equal(sortChunks, [0, 3, 1, 4, 2, 5]);      // arange(6).reshape(2,3).T.ravel()
    assert.equal(restoreChunks, [0, 2, 4, 1, 3, 5]);   // arange(6).reshape(3,2).T.ravel()
    assert.equal(localExperts(1, 16, 4), { first: 4, count: 4 });
  });

  test('splits, per-local-expert counts and row sort from all-gathered counts', () => {
    // 2 EP ranks, 4 experts (2 local each); rows of rank s: counts[s][e]
    const counts = [[1, 2, 3, 0], [0, 1, 1, 2]];
    const [p0, p1] = planAllToAllDispatch(counts);
    assert.equal(p0.inputSplits, [3, 3]);
    assert.equal(p1.inputSplits, [1, 3]);
    assert.equal(p0.outputSplits, [3, 1]);
    assert.equal(p1.outputSplits, [3, 3]);
    assert.equal(p0.numGlobalTokensPerLocalExpert, [[1, 2], [0, 1]]);
    assert.equal(p0.tokensPerLocalExpert, [1, 3]);
    // received on rank 0: (src0: e0 ×1, e1 ×2)(src1: e1 ×1) → (e0: src0)(e1: src0, src0, src1)
    assert.equal(Array.from(p0.sortRows), [0, 1, 2, 3]);
    // received on rank 1: (src0: e2 ×3)(src1: e2 ×1, e3 ×2) → (e2: 0,1,2,3)(e3: 4,5)
    assert.equal(Array.from(p1.sortRows), [0, 1, 2, 3, 4, 5]);
    const [q0] = planAllToAllDispatch([[1, 1, 0, 0], [2, 1, 0, 0]]);
    assert.equal(Array.from(q0.sortRows), [0, 2, 3, 1, 4]);       // (src0 e0)(src1 e0 e0)(src0 e1)(src1 e1)
    for (let i = 0; i < q0.sortRows.length; i++) assert.is(q0.restoreRows[q0.sortRows[i]], i);
    assert.is(offRankRows(planAllToAllDispatch(counts)), 3 + 1);
  });
}, ['cpu']);
