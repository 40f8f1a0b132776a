// The whole MoE layer (route → permute → grouped experts → unpermute → + shared) against a tfjs
// autograd oracle (src/model/moe/reference.ts). Routing decisions are fixed on the host from the
// layer's own plan (outside tf.grads, tfjs-notes P3); the oracle's surrogate scalar is
//   sum(y · dy) + lossScale · (Σ aux + z)
// and its gradients w.r.t. x and every parameter must match the hand-written backward (rel ≤ 1e-4).
import { forEachBackend, tf, assert, assertClose, assertNoLeak } from './support/backends.ts';
import { resolveConfig, type MoEConfig, type ModelConfig } from '../src/model/config.ts';
import { ParamStore, GradStore, defaultContext, type ForwardContext } from '../src/model/module.ts';
import { SavedActivations } from '../src/model/saved.ts';
import { MoELayer } from '../src/model/moe/moe-layer.ts';
import { referenceMoELayer, type ReferenceOptions } from '../src/model/moe/reference.ts';
import type { RoutingPlan } from '../src/model/routing/plan.ts';
import { auxLossScores, auxRoutingMap, countsPerExpert } from '../src/model/routing/aux-loss.ts';

const B = 2, S = 3, H = 8, E = 4;
const init = (shape: number[], _role: string, seed: number) => tf.randomNormal(shape, 0, 0.5, 'float32', seed);

function makeCfg(moe: Partial<MoEConfig>): ModelConfig {
  return resolveConfig('tiny', {
    hiddenSize: H,
    moe: { numExperts: E, topk: 2, expertHiddenSize: 6, numSharedExperts: 1, sharedExpertGate: true, scoreFunction: 'softmax', topkScalingFactor: null, auxLoss: [], zLossCoeff: 0, ...moe },
  });
}

interface Run { layer: MoELayer; params: ParamStore; grads: GradStore; y: Float32Array; dx: Float32Array; plan: RoutingPlan; ctx: ForwardContext; x: tf.Tensor; dy: tf.Tensor; noise: tf.Tensor | null }

function run(moe: Partial<MoEConfig>, setup?: (l: MoELayer) => void): Run {
  const cfg = makeCfg(moe);
  const params = new ParamStore();
  const layer = new MoELayer(cfg, 1, params, 'layers.1.moe', init);
  setup?.(layer);
  const x = tf.randomNormal([B, S, H], 0, 1, 'float32', 11), dy = tf.randomNormal([B, S, H], 0, 1, 'float32', 12);
  const ctx = defaultContext({ lossScale: 0.5, seed: 3 });
  const rec = new SavedActivations('moe');
  const grads = new GradStore();
  const yT = layer.forward(x, rec, ctx);
  // (read before the backward, which releases every saved tensor after its last use)
  const noise = rec.has('routerJitter') ? tf.keep(tf.clone(rec.get('routerJitter'))) : null;
  const dxT = layer.backward(dy, rec, grads, ctx);
  const plan = rec.getHost<RoutingPlan>('plan');
  const out = { layer, params, grads, y: yT.dataSync() as Float32Array, dx: dxT.dataSync() as Float32Array, plan, ctx, x, dy, noise };
  yT.dispose(); dxT.dispose(); rec.dispose();
  return out;
}

function checkAgainstOracle(r: Run, refOpts: ReferenceOptions = {}): void {
  const moe = r.layer.cfg.moe;
  const names = r.params.names();
  const T = B * S;
  const f = (x: tf.Tensor, ...ws: tf.Tensor[]) => {
    const w = Object.fromEntries(names.map((n, i) => [n.split('.').slice(3).join('.'), ws[i]]));
    const shared = w['shared.w1'] ? { w1: w['shared.w1'], w3: w['shared.w3'], w2: w['shared.w2'], gate: w['shared.gate'] ?? null } : null;
    const { y, aux } = referenceMoELayer(tf.reshape(x, [T, H]) as tf.Tensor2D,
      { router: w['router'], w1: w['experts.w1'], w3: w['experts.w3'], w2: w['experts.w2'], shared }, r.plan, moe,
      { seqLen: S, noise: r.noise, ...refOpts });
    return tf.add(tf.sum(tf.mul(y, tf.reshape(r.dy, [T, H]))), tf.mul(aux, r.ctx.lossScale)) as tf.Scalar;
  };
  const { y: yRef } = referenceMoELayer(tf.reshape(r.x, [T, H]) as tf.Tensor2D, {
    router: r.params.get('layers.1.moe.router'), w1: r.params.get('layers.1.moe.experts.w1'), w3: r.params.get('layers.1.moe.experts.w3'),
    w2: r.params.get('layers.1.moe.experts.w2'),
    shared: moe.numSharedExperts ? { w1: r.params.get('layers.1.moe.shared.w1'), w3: r.params.get('layers.1.moe.shared.w3'),
      w2: r.params.get('layers.1.moe.shared.w2'), gate: moe.sharedExpertGate ? r.params.get('layers.1.moe.shared.gate') : null } : null,
  }, r.plan, moe, { seqLen: S, noise: r.noise, ...refOpts });
  assertClose(r.y, yRef.dataSync(), 1e-5, 'y');
  const g = tf.grads(f)([r.x, ...names.map((n) => r.params.get(n))]);
  assertClose(r.dx, g[0].dataSync(), 1e-4, 'dx');
  names.forEach((n, i) => assertClose(r.grads.get(n)!.dataSync(), g[i + 1].dataSync(), 1e-4, `d ${n}`));
}

forEachBackend('moe layer', (test) => {
  test('softmax after top-k, switch aux + z, dropless, gated shared expert', () => tf.tidy(() => {
    const r = run({ auxLoss: [{ type: 'switch', coeff: 0.1 }], zLossCoeff: 0.01 });
    assert.is(r.plan.capacity, null);
    assert.equal(r.plan.permute.numRows, B * S * 2);
    checkAgainstOracle(r);
    const st = r.ctx.routerStats;
    assert.is(st.length, 1);
    assert.ok(st[0].auxLosses.switch > 0 && st[0].auxLosses.z > 0, 'aux values recorded');
    assert.is(st[0].tokensPerExpert.reduce((a, b) => a + b, 0), B * S * 2);
  }));

  test('softmax before top-k, seq aux, capacity 0.75 with probs dropping', () => tf.tidy(() => {
    const r = run({ preSoftmax: true, auxLoss: [{ type: 'seq', coeff: 0.1 }], capacityFactor: 0.75 });
    assert.is(r.plan.capacity, 3); // ceil(6·2/4·0.75)
    assert.is(r.ctx.routerStats[0].droppedAssignments, r.plan.droppedAssignments);
    checkAgainstOracle(r);
  }));

  test('sigmoid + bias + scaling + groups, ep-group aux + z, position drop with padding', () => tf.tidy(() => {
    const other = Float64Array.from([5, 1, 3, 3]);
    const r = run({ scoreFunction: 'sigmoid', expertBias: true, topkScalingFactor: 2.5, numGroups: 2, groupTopk: 1,
      auxLoss: [{ type: 'ep-group', coeff: 0.1 }], zLossCoeff: 0.01, capacityFactor: 1.0, dropPolicy: 'position', padToCapacity: true },
    (l) => { l.expertBias = Float32Array.from([0.3, -0.2, 0.1, 0]); l.epGroupCounts = (local) => [local, other]; });
    assert.is(r.plan.permute.numRows, E * 3, 'padded: E·capacity rows');
    const counts = new Float64Array(E);
    // the oracle needs the same summed counts: rebuild them from the plan's aux map
    const own = r.ctx.routerStats.length; assert.is(own, 1);
    const local = countsPerExpert(auxRoutingMap(auxLossScores(r.plan.logits, B * S, E, 'sigmoid'), B * S, E, 2), B * S, E);
    for (let e = 0; e < E; e++) counts[e] = local[e] + other[e];
    checkAgainstOracle(r, { epGroup: { counts, totalTokens: 2 * B * S } });
  }));

  test('sigmoid top-1, global aux over micro-batches, input jitter, no shared expert', () => tf.tidy(() => {
    const r = run({ scoreFunction: 'sigmoid', topk: 1, auxLoss: [{ type: 'global', coeff: 0.1 }], inputJitterEps: 0.1, numSharedExperts: 0 },
      (l) => { l.globalTracker.add([6, 0, 0, 0]); }); // a previous micro-batch
    assert.ok(r.noise !== null, 'jitter saved');
    assert.is(r.layer.globalTracker.steps, 2);
    checkAgainstOracle(r, { global: { counts: r.layer.globalTracker.average(), totalTokens: B * S } });
  }));

  test('dropless equals padded when capacity > T (nothing dropped)', () => tf.tidy(() => {
    const a = run({ auxLoss: [{ type: 'switch', coeff: 0.1 }] });
    const b = run({ auxLoss: [{ type: 'switch', coeff: 0.1 }], capacityFactor: 10, padToCapacity: true });
    assert.is(b.plan.permute.numRows, E * B * S, 'every expert gets all T rows');
    assertClose(b.y, a.y, 1e-5, 'y');
    assertClose(b.dx, a.dx, 1e-5, 'dx');
    for (const n of a.params.names()) assertClose(b.grads.get(n)!.dataSync(), a.grads.get(n)!.dataSync(), 1e-5, n);
  }));

  test('expert bias: counts accumulate over training forwards, update once, eval is not counted', () => tf.tidy(() => {
    const cfg = makeCfg({ scoreFunction: 'sigmoid', expertBias: true, biasUpdateRate: 0.01 });
    const layer = new MoELayer(cfg, 0, new ParamStore(), 'm', init);
    const x = tf.randomNormal([B, S, H], 0, 1, 'float32', 5);
    for (const training of [true, true, false]) {
      const rec = new SavedActivations('m');
      layer.forward(x, rec, defaultContext({ training }));
      rec.dispose();
    }
    const c = Float64Array.from(layer.localTokensPerExpert);
    assert.is(c.reduce((s, v) => s + v, 0), 2 * B * S * 2, 'two training forwards of T·k');
    layer.updateExpertBias();
    const mean = (2 * B * S * 2) / E;
    assert.equal([...layer.expertBias], [...c].map((v) => Math.fround(0.01 * Math.sign(mean - v))));
    assert.is(layer.localTokensPerExpert.reduce((s, v) => s + v, 0), 0, 'reset');
  }));

  test('dropping or swapping saved activations by name gives identical gradients (recompute recipes)', () => tf.tidy(() => {
    const cfg = makeCfg({ auxLoss: [{ type: 'switch', coeff: 0.1 }], zLossCoeff: 0.01, capacityFactor: 1.0, inputJitterEps: 0.1 });
    const params = new ParamStore();
    const layer = new MoELayer(cfg, 0, params, 'm', init);
    const x = tf.randomNormal([B, S, H], 0, 1, 'float32', 5), dy = tf.randomNormal([B, S, H], 0, 1, 'float32', 6);
    const pass = (policy: (rec: SavedActivations) => void, recordStats = true) => {
      const rec = new SavedActivations('m'), grads = new GradStore(), ctx = defaultContext({ lossScale: 0.5, recordStats });
      tf.dispose(layer.forward(x, rec, ctx));
      policy(rec);
      const dx = layer.backward(dy, rec, grads, ctx);
      const out = [dx.dataSync(), ...params.names().map((n) => grads.get(n)!.dataSync())];
      grads.dispose(); rec.dispose();
      return { out, stats: ctx.routerStats.length };
    };
    const base = pass(() => {});
    const dropped = pass((rec) => { for (const n of ['permutedTokens', 'fc1Out', 'fc3Out', 'act', 'sharedFc1Out', 'sharedFc3Out', 'sharedAct', 'routerJitter']) rec.drop(n); });
    const swapped = pass((rec) => { for (const i of rec.list()) rec.toHost(i.name); });
    const replay = pass(() => {}, false);
    base.out.forEach((b, i) => {
      assertClose(dropped.out[i], b, 1e-6, `recompute [${i}]`);
      assertClose(swapped.out[i], b, 1e-6, `swap [${i}]`);
      assertClose(replay.out[i], b, 1e-6, `recordStats=false replay [${i}]`);
    });
    assert.is(base.stats, 1);
    assert.is(replay.stats, 0, 'a replay records no stats');
  }));

  test('savedNames are what forward saves; no tensor leak over repeated forward/backward', async () => {
    const cfg = makeCfg({ auxLoss: [{ type: 'switch', coeff: 0.1 }], zLossCoeff: 0.01, capacityFactor: 1.0 });
    const params = new ParamStore();
    const layer = new MoELayer(cfg, 0, params, 'm', init);
    const x = tf.randomNormal([B, S, H], 0, 1, 'float32', 5), dy = tf.randomNormal([B, S, H], 0, 1, 'float32', 6);
    const rec0 = new SavedActivations('m');
    tf.dispose(layer.forward(x, rec0, defaultContext()));
    assert.equal(rec0.list().map((i) => i.name).sort(), [...layer.savedNames].sort());
    rec0.dispose();
    const grads = new GradStore();
    await assertNoLeak(() => {
      const rec = new SavedActivations('m');
      const ctx = defaultContext();
      const y = layer.forward(x, rec, ctx);
      const dx = layer.backward(dy, rec, grads, ctx);
      tf.dispose([y, dx]);
      rec.dispose();
    }, 'MoE forward/backward');
    grads.dispose(); params.dispose(); tf.dispose([x, dy]);
  });
});
