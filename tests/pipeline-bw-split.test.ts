// runPipeline (single device per stage) with split-backward schedules (pipeline/schedule.ts
// `splitBackward`: B = input gradient, W = weight gradient): B computes the tensors and charges dX, W
// charges dW (exec/pipeline-executor.ts). Against the same schedule without the split, on PP 2 / 4:
//   - loss exact and gradients equal (1e-6): the tensors are computed the same way;
//   - W ops exist, every one after its B on the same device, and each device's compute total is the
//     unsplit one (1e-9 relative): B + W take exactly the unsplit B's time;
//   - the step is not longer (W is deferred, the input gradient goes to the previous stage earlier).
import { forEachBackend, tf, assert, assertClose } from './support/backends.ts';
import { resolveConfig, type ConfigOverrides } from '../src/model/config.ts';
import { MoEGPT } from '../src/model/gpt.ts';
import { Cluster, getSpec } from '../src/device/index.ts';
import { execLayout } from '../src/parallel/exec/layout.ts';
import { runPipeline } from '../src/parallel/exec/pipeline-executor.ts';
import { toyMicroBatches, gradArrays } from '../src/parallel/exec/reference.ts';
import { partitionLayers } from '../src/parallel/pipeline/partition.ts';
import { schedule1F1B, scheduleInterleaved } from '../src/parallel/pipeline/schedule.ts';

const small: ConfigOverrides = {
  vocabSize: 64, hiddenSize: 32, numLayers: 4, numDenseLayers: 1, denseIntermediateSize: 48, numHeads: 2, numKvHeads: 1, headDim: 8,
  moe: { numExperts: 8, topk: 2, expertHiddenSize: 8 },
} as ConfigOverrides;

forEachBackend('pipeline executor: split backward (B/W)', (test) => {
  const cfg = resolveConfig('tiny', small);
  test('1F1B pp=2/4 and interleaved pp=2 vpp=2: same numbers, W charges the rest of B', () => {
    const model = new MoEGPT(cfg, 11);
    for (const [pp, vpp, M] of [[2, 1, 4], [4, 1, 8], [2, 2, 4]]) {
      const mbs = toyMicroBatches(M, 2, 8, 64, pp);
      const lay = execLayout(model.cfg, 2, 8, {});
      const part = partitionLayers(Array.from({ length: cfg.numLayers }, (_, l) => lay.layerFlops.get(l) ?? 0), pp, vpp);
      const run = (split: boolean) => {
        for (const l of model.moeLayers()) l.resetGlobalAux();
        const cluster = new Cluster({ spec: getSpec('ascend-910b'), nodes: 1, devicesPerNode: pp });
        const schedule = vpp > 1 ? scheduleInterleaved(pp, vpp, M, { splitBackward: split }) : schedule1F1B(pp, M, { splitBackward: split });
        const r = runPipeline({ model, cluster, schedule, partition: part, microBatches: mbs, costs: lay.costs });
        const g = gradArrays(r.grads); r.grads.dispose();
        const compute = Array.from({ length: pp }, (_, d) => cluster.timeline.events.filter((e) => e.device === d && e.stream === 'compute').reduce((a, e) => a + e.end - e.start, 0));
        return { loss: r.loss, g, compute, tl: cluster.timeline, spans: r.computeSpans };
      };
      const whole = run(false), n0 = tf.memory().numTensors, split = run(true), what = `pp=${pp} vpp=${vpp} M=${M}`;
      assert.is(tf.memory().numTensors, n0, `${what}: no tensor leaks (split run)`);
      assert.is(split.loss, whole.loss, `${what}: loss`);
      for (const [n, want] of whole.g) assertClose(split.g.get(n)!, want, 1e-6, `${what}: grad ${n}`);
      const ws = split.tl.events.filter((e) => e.args.part === 'dW');
      assert.ok(ws.length >= pp * M, `${what}: W ops (${ws.length})`);
      assert.ok(!whole.tl.events.some((e) => e.args.part === 'dW'));
      assert.is(split.spans.filter((x) => x.kind === 'W').length, pp * vpp * M, `${what}: one W span per (rank, chunk, micro-batch)`);
      for (const x of split.spans.filter((y) => y.kind === 'W')) {
        const b = split.spans.find((y) => y.kind === 'B' && y.rank === x.rank && y.microBatch === x.microBatch && y.chunk === x.chunk)!;
        assert.ok(x.start >= b.end - 1e-12, `${what}: W(mb ${x.microBatch}) after its B on rank ${x.rank}`);
      }
      assertClose(split.compute, whole.compute, 1e-9, `${what}: per-device compute total unchanged by the split`);
      const step = (tl: typeof whole.tl) => tl.makespan;
      assert.ok(step(split.tl) <= step(whole.tl) * (1 + 1e-9), `${what}: step ${step(split.tl)} with W, ${step(whole.tl)} without`);
    }
    model.dispose();
  });
}, ['wasm']);
