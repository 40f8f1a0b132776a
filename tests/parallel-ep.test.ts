// Expert parallelism equals single-device training (issue 5): same parameters, same global batch split
// over DP ranks, EP over 2/4/8 simulated NPUs with the all-to-all (flat and hierarchical) and the
// all-gather dispatchers, and the three aux-loss scopes. Loss and EVERY gradient must match within
// 1e-5 relative (max |Δ| / max |ref| per tensor): float32 sums are re-associated (a split reduction
// adds partial sums in another order than the unsplit one, expert weight-gradient rows arrive in
// another order), so bitwise equality is not expected; at these sizes (≤ 64 summands of O(1) terms)
// the reassociation error is ~1e-7 relative, and 1e-5 leaves 100x headroom while still catching any
// missing or double-counted term (those are ≥ 1e-3 here). The oracle is src/parallel/reference.ts.
// Communication bytes of the all-to-all are checked against perf-model §2.6: per MoE layer and
// micro-batch, 4 all-to-alls (dispatch + combine, forward and backward) each moving the rows routed
// off-rank, H·4 bytes per row (probs: 4 bytes per row, dispatch forward and its backward).
import { forEachBackend, assert, assertClose, assertNoLeak, tf } from './support/backends.ts';
import { resolveConfig, type AuxLossType, type ModelConfig } from '../src/model/config.ts';
import { MoEGPT } from '../src/model/gpt.ts';
import { Cluster, getSpec } from '../src/device/index.ts';
import { ParallelModel, type ParallelModelOptions } from '../src/parallel/parallel-model.ts';
import { referenceStep } from '../src/parallel/reference.ts';
import { expertOwner } from '../src/parallel/ep/dispatch-plan.ts';

const RTOL = 1e-5, B = 8, S = 8, H = 32, E = 16, V = 64;

function makeCfg(aux: AuxLossType, over: Partial<ModelConfig['moe']> = {}): ModelConfig {
  return resolveConfig('tiny', {
    hiddenSize: H, numLayers: 2, numDenseLayers: 1, denseIntermediateSize: 64, numHeads: 2, numKvHeads: 2, headDim: 16, vocabSize: V,
    mla: { qLoraRank: 16, kvLoraRank: 16, qkNopeHeadDim: 8, qkRopeHeadDim: 8, vHeadDim: 8 },
    moe: { numExperts: E, topk: 4, expertHiddenSize: 16, auxLoss: [{ type: aux, coeff: 1e-2 }], zLossCoeff: 1e-3, ...over },
  });
}
const tokens = Int32Array.from({ length: B * S }, (_, i) => (i * 7 + 3) % V);
const targets = Int32Array.from({ length: B * S }, (_, i) => (i * 5 + 1) % V);

interface Case { cfg: ModelConfig; pm: ParallelModel; cluster: Cluster; loss: number; refLoss: number; report: ReturnType<ParallelModel['forwardBackward']> }

function runCase(cfg: ModelConfig, layout: string, M = 1, opts: Partial<ParallelModelOptions> = {}, nodes = 2, perNode = 4): Case {
  const cluster = new Cluster({ spec: getSpec('ascend-910b'), nodes, devicesPerNode: perNode });
  const pm = new ParallelModel(cfg, cluster, { layout, seed: 5, ...opts });
  const report = pm.forwardBackward(tokens, targets, B, S, { microBatches: M });
  const single = new MoEGPT(cfg, 5);
  const ref = referenceStep(single, pm.layout, tokens, targets, B, S, M);
  // every gradient on every rank: experts against the owner's slice of the single-device bank
  for (const [name, g] of ref.grads.grads) {
    const want = g.dataSync();
    for (let r = 0; r < pm.layout.world; r++) {
      const got = pm.grads[r].get(name);
      assert.ok(got, `rank ${r} has no gradient for ${name}`);
      let w: ArrayLike<number> = want;
      if (pm.expertParams.has(name)) {
        const per = want.length / E, Eloc = E / pm.layout.ep, er = r % pm.layout.ep;
        w = want.slice(er * Eloc * per, (er + 1) * Eloc * per);
      }
      assertClose(got!.dataSync(), w, RTOL, `${layout} ${name} on rank ${r}`);
    }
  }
  assertClose([report.loss], [ref.loss], RTOL, `${layout} loss`);
  const out = { cfg, pm, cluster, loss: report.loss, refLoss: ref.loss, report };
  ref.grads.dispose(); single.dispose();
  return out;
}

const done = (c: Case) => c.pm.dispose();

/** Rows each rank sends off-rank, from its own router counts (independent of the ledger). */
function offRankRowsFromStats(c: Case, layerCall: number): number {
  let rows = 0;
  c.report.routerStats.forEach((stats, r) => {
    const epRank = r % c.pm.layout.ep, tpe = stats[layerCall].tokensPerExpert;
    tpe.forEach((n, e) => { if (expertOwner(e, E, c.pm.layout.ep) !== epRank) rows += n; });
  });
  return rows;
}

forEachBackend('parallel EP equals single device', (test) => {
  for (const [layout, aux] of [['ep=2,dp=2', 'switch'], ['ep=4,dp=4', 'ep-group'], ['ep=8,dp=8', 'ep-group'], ['ep=2,dp=4', 'ep-group']] as const) {
    test(`${layout}, ${aux} aux: loss and every gradient (rtol ${RTOL})`, () => done(runCase(makeCfg(aux), layout)));
  }

  test('global aux over 2 micro-batches (counts all-reduced over DP, accumulated over micro-batches)', () => done(runCase(makeCfg('global'), 'ep=4,dp=4', 2)));

  test('the aux scope matters: ep-group and switch gradients differ, and each equals its own oracle', () => {
    const a = runCase(makeCfg('ep-group', { zLossCoeff: 0 }), 'ep=4,dp=4'), b = runCase(makeCfg('switch', { zLossCoeff: 0 }), 'ep=4,dp=4');
    const ga = a.pm.grads[0].get('layers.1.moe.router')!.dataSync(), gb = b.pm.grads[0].get('layers.1.moe.router')!.dataSync();
    let diff = 0, scale = 0;
    for (let i = 0; i < ga.length; i++) { diff = Math.max(diff, Math.abs(ga[i] - gb[i])); scale = Math.max(scale, Math.abs(gb[i])); }
    assert.ok(diff / scale > 100 * RTOL, `router gradients of the two scopes differ by only ${diff / scale}`);
    assert.ok(a.report.perRank[0].aux['ep-group'] !== undefined && b.report.perRank[0].aux.switch !== undefined);
    done(a); done(b);
  });

  test('sigmoid router with expert bias and top-k scaling (the paper router)', () => {
    done(runCase(makeCfg('ep-group', { scoreFunction: 'sigmoid', topkScalingFactor: 2.5, expertBias: true }), 'ep=4,dp=4', 2));
  });

  test('all-to-all bytes per step = 4 · rows routed off-rank · H · 4 bytes per MoE layer (+ probs)', () => {
    const c = runCase(makeCfg('switch'), 'ep=4,dp=4', 2);
    let rows = 0;
    for (let mb = 0; mb < 2; mb++) rows += offRankRowsFromStats(c, mb);
    const led = c.cluster.commLedger;
    const tok = ['ep.dispatch', 'ep.combine', 'ep.combine.bwd', 'ep.dispatch.bwd'].reduce((a, label) => a + led.total({ op: 'allToAllV', label }), 0);
    assert.is(tok, 4 * rows * H * 4);
    assert.is(led.total({ op: 'allToAllV', label: 'ep.dispatch.probs' }) + led.total({ op: 'allToAllV', label: 'ep.dispatch.probs.bwd' }), 2 * rows * 4);
    // the counts all-gather: each of the 4 ranks receives 3 others' [E] int32 counts, per layer call
    assert.is(led.total({ op: 'allGather', label: 'ep.tokensPerExpert' }), 2 * 4 * 3 * E * 4);
    done(c);
  });

  test('hierarchical all-to-all (2 nodes x 4 NPUs, EP 8): same numbers, fewer inter-node bytes', () => {
    const flat = runCase(makeCfg('ep-group'), 'ep=8,dp=8');
    const hier = runCase(makeCfg('ep-group'), 'ep=8,dp=8', 1, { dispatcher: 'alltoall-hierarchical' });
    assertClose([hier.loss], [flat.loss], RTOL, 'hierarchical loss');
    const inter = (c: Case) => c.cluster.commLedger.records.filter((r) => r.link === 'inter' && /^ep\.(dispatch|combine)/.test(r.label) && !r.label.includes('probs')).reduce((a, r) => a + r.bytes, 0);
    assert.ok(inter(hier) < inter(flat), `hierarchical inter-node bytes ${inter(hier)} !< flat ${inter(flat)}`);
    done(flat); done(hier);
  });

  test('all-gather dispatcher: same numbers; bytes = all-gather of tokens and probs + reduce-scatter', () => {
    const c = runCase(makeCfg('switch'), 'ep=4,dp=8', 1, { dispatcher: 'allgather' });
    // per EP group of 4, per direction: every rank receives the 3 other ranks' [T, H] tokens
    const T = (B / 8) * S;
    assert.is(c.cluster.commLedger.total({ op: 'allGather', label: 'ep.allgather.tokens' }), 2 * 4 * 3 * T * H * 4);
    done(c);
  });

  test('no tensor leaks over a parallel step', async () => {
    const cfg = makeCfg('ep-group');
    const cluster = new Cluster({ spec: getSpec('ascend-910b'), nodes: 1 });
    const pm = new ParallelModel(cfg, cluster, { layout: 'ep=2,dp=2', seed: 5 });
    await assertNoLeak(() => { pm.forwardBackward(tokens, targets, B, S); pm.zeroGrad(); }, 'ParallelModel.forwardBackward');
    assert.is(cluster.device(0).hbm.usedBy('activations'), 0);
    pm.dispose();
    void tf;
  });
}, ['wasm']);
