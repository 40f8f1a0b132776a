// The hierarchical all-to-all delivers exactly what the flat dispatch delivers, and a token whose
// k experts sit on one remote node crosses the inter-node link once (<= 1/k of the flat bytes).
import { suite } from 'uvu';
import { forEachBackend, tf, assert, assertClose, assertNoLeak } from './support/backends.ts';
import { Cluster } from '../src/device/cluster.ts';
import { getSpec } from '../src/device/specs.ts';
import { planHierarchicalAllToAll, type RankDispatch } from '../src/device/a2a-plan.ts';
import { hierarchicalAllToAllTime } from '../src/device/cost.ts';

function rng(seed: number) { let s = seed >>> 0 || 1; return () => { s ^= s << 13; s >>>= 0; s ^= s >> 17; s ^= s << 5; s >>>= 0; return s / 2 ** 32; }; }

/** Top-k routing of `T` tokens per rank over `E` experts on `n` ranks (E/n experts each); rows sorted by destination. */
function route(n: number, T: number, E: number, k: number, seed: number, sameNode?: { ranksPerNode: number }): RankDispatch[] {
  const r = rng(seed), perRank = E / n;
  return Array.from({ length: n }, (_, s) => {
    const rows: Array<[number, number, number]> = []; // [dest, token, expert]
    for (let t = 0; t < T; t++) {
      let experts: number[];
      if (sameNode) { // all k experts on one remote node (node-limited routing to a single node)
        const nodes = n / sameNode.ranksPerNode, myNode = Math.floor(s / sameNode.ranksPerNode);
        const node = (myNode + 1 + Math.floor(r() * (nodes - 1))) % nodes, span = sameNode.ranksPerNode * perRank;
        const pool = Array.from({ length: span }, (_, i) => node * span + i);
        experts = pool.sort(() => r() - 0.5).slice(0, k);
      } else experts = Array.from({ length: E }, (_, e) => e).sort(() => r() - 0.5).slice(0, k);
      for (const e of experts) rows.push([Math.floor(e / perRank), t, e]);
    }
    rows.sort((a, b) => a[0] - b[0] || a[2] - b[2] || a[1] - b[1]);
    return { numTokens: T, rowToken: rows.map((x) => x[1]), rowDest: rows.map((x) => x[0]) };
  });
}

const plan = suite('hierarchical all-to-all plan (pure)');
plan('single-remote-node tokens cross once: phase-1 rows = tokens, flat inter rows = k x tokens', () => {
  const n = 16, T = 10, k = 4;
  const nodeOf = Array.from({ length: n }, (_, i) => Math.floor(i / 8));
  const d = route(n, T, 64, k, 7, { ranksPerNode: 8 });
  const p = planHierarchicalAllToAll(nodeOf, d);
  assert.is(p.phase1TotalRows, n * T);
  let flatInter = 0;
  d.forEach((r, s) => { for (let j = 0; j < r.rowDest.length; j++) if (nodeOf[r.rowDest[j]] !== nodeOf[s]) flatInter++; });
  assert.is(flatInter, n * T * k);
  assert.equal(p.splits.map((row) => row.reduce((a, b) => a + b, 0)), d.map(() => T * k));
});
plan('allgather mode sends every token to every remote node; bad dispatch lists problems', () => {
  const nodeOf = [0, 0, 1, 1, 2, 2];
  const d = route(6, 5, 12, 2, 3);
  assert.is(planHierarchicalAllToAll(nodeOf, d, 'allgather').phase1TotalRows, 6 * 5 * 2);
  assert.throws(() => planHierarchicalAllToAll([0, 0, 1], route(3, 2, 3, 1, 1)), /same number of group ranks on every node/);
  assert.throws(() => planHierarchicalAllToAll([0, 1], [{ numTokens: 1, rowToken: [0, 3], rowDest: [1, 0] }, { numTokens: 1, rowToken: [0], rowDest: [5] }]),
    /2 problem\(s\):[\s\S]*rank 0 row 1: token 3 outside[\s\S]*rank 1 row 0: destination 5 outside/);
});
plan.run();

forEachBackend('hierarchical all-to-all', (test) => {
  const spec = getSpec('ascend-910b');
  for (const [nodes, dpn] of [[2, 4], [4, 2], [2, 8]] as const) {
    test(`equals the flat dispatch on ${nodes} nodes x ${dpn} (random top-3 and single-node top-4)`, () => {
      const n = nodes * dpn, H = 4;
      for (const [k, same] of [[3, false], [4, true]] as const) {
        const d = route(n, 6, n * 2, k, 11 + n, same ? { ranksPerNode: dpn } : undefined);
        const tokens = Array.from({ length: n }, (_, s) => tf.tensor2d(Float32Array.from({ length: 6 * H }, (_, i) => s * 1000 + i), [6, H]));
        const c = new Cluster({ spec, nodes, devicesPerNode: dpn });
        const flat = c.comm.dispatchAllToAll(c.world(), tokens, d);
        const hier = c.comm.hierarchicalAllToAll(c.world(), tokens, d);
        flat.outputs.forEach((o, i) => {
          assert.equal(hier.outputs[i].shape, o.shape, `rank ${i} shape`);
          assertClose(hier.outputs[i].dataSync(), o.dataSync(), 0, `rank ${i} rows`);
        });
        const rowBytes = H * 4;
        const flatInter = c.commLedger.total({ op: 'allToAllV', link: 'inter' });
        const hierInter = c.commLedger.total({ op: 'hierarchicalAllToAll.phase1', link: 'inter' });
        assert.is(c.commLedger.total({ op: 'hierarchicalAllToAll.phase1', link: 'intra' }), 0, 'phase 1 is inter-node only');
        assert.is(c.commLedger.total({ op: 'hierarchicalAllToAll.phase2', link: 'inter' }), 0, 'phase 2 is intra-node only');
        if (same) assert.ok(hierInter <= flatInter / k, `hier inter ${hierInter} <= flat inter ${flatInter} / ${k}`);
        else assert.ok(hierInter <= flatInter, `hier inter ${hierInter} <= flat ${flatInter}`);
        const want = hierarchicalAllToAllTime(hier.plan.phase1MaxRows * rowBytes, hier.plan.phase2MaxRows * rowBytes, nodes, dpn, spec.intraNode, spec.interNode);
        assertClose([hier.seconds, hier.phase1Seconds], [want.total, want.interNode], 1e-12, 'hierarchical time');
        tf.dispose([...flat.outputs, ...hier.outputs, ...tokens]);
      }
    });
  }

  test('combine (flat and hierarchical) sums each token\'s weighted expert outputs; hierarchical crosses nodes once', () => {
    for (const [nodes, dpn, k, same] of [[2, 4, 3, false], [4, 2, 4, true], [2, 2, 2, false]] as const) {
      const n = nodes * dpn, H = 5, T = 7;
      const d = route(n, T, n * 2, k, 31 + n, same ? { ranksPerNode: dpn } : undefined);
      const r = rng(99 + n);
      const weights = d.map((x) => Float32Array.from(x.rowDest, () => r()));
      const host = Array.from({ length: n }, () => Float32Array.from({ length: T * H }, () => r() - 0.5));
      const tokens = host.map((h) => tf.tensor2d(h, [T, H]));
      const c = new Cluster({ spec, nodes, devicesPerNode: dpn });
      const disp = c.comm.hierarchicalAllToAll(c.world(), tokens, d);
      const expertRows = disp.outputs.map((o) => tf.mul(o, 2)); // "expert" = x2
      const flat = c.comm.combineAllToAll(c.world(), expertRows, d, { rowWeights: weights });
      const hier = c.comm.hierarchicalCombine(c.world(), expertRows, d, { rowWeights: weights, plan: disp.plan });
      for (let s = 0; s < n; s++) {
        const wsum = new Float32Array(T);
        for (let j = 0; j < d[s].rowToken.length; j++) wsum[d[s].rowToken[j]] += weights[s][j];
        const want = host[s].map((v, i) => 2 * v * wsum[Math.floor(i / H)]);
        assertClose(flat.outputs[s].dataSync(), want, 1e-5, `flat combine rank ${s}`);
        assertClose(hier.outputs[s].dataSync(), want, 1e-5, `hierarchical combine rank ${s}`);
      }
      const flatInter = c.commLedger.total({ op: 'allToAllV', link: 'inter' });
      const hierInter = c.commLedger.total({ op: 'hierarchicalCombine.phase1', link: 'inter' });
      assert.is(hierInter, c.commLedger.total({ op: 'hierarchicalAllToAll.phase1', link: 'inter' }), 'combine phase 1 mirrors dispatch phase 1');
      assert.is(c.commLedger.total({ op: 'hierarchicalCombine.phase2', link: 'inter' }), 0);
      if (same) assert.ok(hierInter <= flatInter / k, `combine inter ${hierInter} <= ${flatInter} / ${k}`);
      assert.ok(hier.events.every((e) => e.stream === (nodes > 1 ? 'comm-inter' : 'comm-intra')));
      tf.dispose([...tokens, ...disp.outputs, ...expertRows, ...flat.outputs, ...hier.outputs]);
    }
  });

  test('phase 2 waits for phase 1; no tensor leaks', async () => {
    const c = new Cluster({ spec, nodes: 2, devicesPerNode: 4 });
    const d = route(8, 5, 16, 2, 5);
    const tokens = Array.from({ length: 8 }, () => tf.ones([5, 3]));
    const h = c.comm.hierarchicalAllToAll(c.world(), tokens, d);
    const p1 = c.timeline.events.filter((e) => e.name.startsWith('hierA2A.phase1'));
    assert.is(p1.length, 8);
    const p1End = Math.max(...p1.map((e) => e.end));
    assert.ok(h.events.every((e) => e.start >= p1End - 1e-15 && e.stream === 'comm-intra'));
    tf.dispose(h.outputs);
    await assertNoLeak(() => tf.dispose(c.comm.hierarchicalAllToAll(c.world(), tokens, d).outputs), 'hierarchicalAllToAll');
    await assertNoLeak(() => tf.dispose(c.comm.dispatchAllToAll(c.world(), tokens, d).outputs), 'dispatchAllToAll');
    const rows = c.comm.dispatchAllToAll(c.world(), tokens, d).outputs;
    const w = d.map((x) => new Float32Array(x.rowDest.length).fill(0.5));
    await assertNoLeak(() => tf.dispose(c.comm.hierarchicalCombine(c.world(), rows, d, { rowWeights: w }).outputs), 'hierarchicalCombine');
    await assertNoLeak(() => tf.dispose(c.comm.combineAllToAll(c.world(), rows, d, { rowWeights: w }).outputs), 'combineAllToAll');
    assert.throws(() => c.comm.combineAllToAll(c.world(), rows.slice(0, 7).concat([rows[0]]), d), /expertRows 7 must be/);
    tf.dispose(rows);
    tf.dispose(tokens);
  });
});
