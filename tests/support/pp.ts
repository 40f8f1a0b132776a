// Shared by the PP × EP/DP/TP equivalence tests: a small tiny-shaped config and one step of
// PipelineParallelModel checked against the single-device oracle (src/parallel/reference.ts): loss
// and every owned gradient on every device of every owning stage within `RTOL` relative.
import { assert, assertClose } from './backends.ts';
import { resolveConfig, type AuxLossType, type ModelConfig } from '../../src/model/config.ts';
import { MoEGPT } from '../../src/model/gpt.ts';
import { Cluster, getSpec } from '../../src/device/index.ts';
import { PipelineParallelModel, type PipelineParallelOptions } from '../../src/parallel/pp/pp-model.ts';
import { localShard, referenceStep } from '../../src/parallel/reference.ts';
import type { SimEvent, Timeline } from '../../src/device/timeline.ts';

export const RTOL = 1e-5, S = 8, V = 64;

export function ppCfg(aux: AuxLossType = 'switch', layers = 4, over: Partial<ModelConfig> = {}): ModelConfig {
  return resolveConfig('tiny', {
    hiddenSize: 32, numLayers: layers, numDenseLayers: 1, denseIntermediateSize: 64, numHeads: 2, numKvHeads: 2, headDim: 16, vocabSize: V,
    mla: { qLoraRank: 16, kvLoraRank: 16, qkNopeHeadDim: 8, qkRopeHeadDim: 8, vHeadDim: 8 },
    moe: { numExperts: 16, topk: 4, expertHiddenSize: 16, auxLoss: [{ type: aux, coeff: 1e-2 }], zLossCoeff: 1e-3 },
    ...over,
  });
}

export function runPP(cfg: ModelConfig, o: Omit<PipelineParallelOptions, 'seed'>, B: number, M: number): void {
  const tokens = Int32Array.from({ length: B * S }, (_, i) => (i * 7 + 3) % V);
  const targets = Int32Array.from({ length: B * S }, (_, i) => (i * 5 + 1) % V);
  const cluster = new Cluster({ spec: getSpec('ascend-910b'), nodes: 2, devicesPerNode: 4 });
  const pp = new PipelineParallelModel(cfg, cluster, { ...o, seed: 5 });
  const label = `${o.layout} ${pp.scheduleName} vpp=${pp.vpp} M=${M}`;
  const rep = pp.forwardBackward(tokens, targets, B, S, { microBatches: M });
  const single = new MoEGPT(cfg, 5);
  const ref = referenceStep(single, pp.inner, tokens, targets, B, S, M);
  for (const [name, g] of ref.grads.grads) {
    for (const s of pp.ownerStages(name)) {
      const pm = pp.stages[s];
      for (let i = 0; i < pm.layout.world; i++) {
        const got = pm.grads[i].get(name);
        assert.ok(got, `${label}: stage ${s} rank ${i} has no gradient for ${name}`);
        assertClose(got!.dataSync(), localShard(pm, name, i, g), RTOL, `${label} ${name} stage ${s} rank ${i}`);
      }
    }
  }
  // a stage holds no gradient of a parameter it does not own
  pp.stages.forEach((pm, s) => { for (const n of pm.grads[0].grads.keys()) assert.ok(pp.ownerStages(n).has(s), `${label}: stage ${s} has a gradient of ${n}`); });
  assertClose([rep.loss], [ref.loss], RTOL, `${label} loss`);
  ref.grads.dispose(); single.dispose(); pp.dispose();
}

/** Every gradient of every stage and rank, keyed `stage/rank/name`, read back to the host. */
export function stageGrads(pp: PipelineParallelModel): Map<string, Float32Array> {
  const grads = new Map<string, Float32Array>();
  pp.stages.forEach((pm, s) => pm.grads.forEach((g, i) => { for (const [n, t] of g.grads) grads.set(`${s}/${i}/${n}`, t.dataSync() as Float32Array); }));
  return grads;
}

/** Same loss and the same set of gradients, each element within `tol` absolute (0: bitwise). */
export function assertSameStep(got: { loss: number; grads: Map<string, Float32Array> }, ref: { loss: number; grads: Map<string, Float32Array> }, tol: number, what: string): void {
  assert.is(got.loss, ref.loss, `${what}: loss`);
  assert.is(got.grads.size, ref.grads.size, `${what}: gradient count`);
  for (const [k, g] of ref.grads) {
    const h = got.grads.get(k);
    assert.ok(h && h.length === g.length, `${what}: ${k} missing`);
    let d = 0;
    for (let i = 0; i < g.length; i++) d = Math.max(d, Math.abs(g[i] - h![i]));
    assert.ok(d <= tol, `${what}: ${k} max |Δ| ${d} > ${tol}`);
  }
}

/** An executed timeline is valid: every op starts after its dependencies end, and no stream runs two ops at once. */
export function assertValidTimeline(tl: Timeline, what: string): void {
  const byId = new Map(tl.events.map((e) => [e.id, e]));
  const streams = new Map<string, SimEvent[]>();
  for (const e of tl.events) {
    for (const d of e.deps) assert.ok(byId.get(d)!.end <= e.start + 1e-12, `${what}: ${e.name} starts before its dependency ${byId.get(d)!.name} ends`);
    const k = `${e.device}/${e.stream}`;
    (streams.get(k) ?? streams.set(k, []).get(k)!).push(e);
  }
  for (const [k, evs] of streams) {
    evs.sort((a, b) => a.start - b.start);
    for (let i = 1; i < evs.length; i++) assert.ok(evs[i].start >= evs[i - 1].end - 1e-12, `${what}: ${k} runs ${evs[i - 1].name} and ${evs[i].name} at once`);
  }
}
