// --memory-budget with EP inside the pipeline stages (src/parallel/pp/stage-budget.ts through
// train/pp-parallel.ts): pp=2 × ep=2 (4 devices), 1F1B, 4 micro-batches, budget halfway between the
// max per-device activation peak with every stage-supported class recomputed and the max without a plan:
//   - every device's executed activation peak ≤ budget, equal to the predicted one (the planning steps
//     run the same simulation: exact), on the first step and on a second (cached plan, no re-planning);
//   - loss and EVERY gradient equal the run without a plan (max |Δ| ≤ 1e-7: recipes rerun the same kernels);
//   - the plan is explained per stage (classes, predicted peaks), levels nested, no stage over-planned;
//   - a budget no level meets fails naming the stage, device, its peak and the best achievable.
import * as assert from 'uvu/assert';
import { forEachBackend } from './support/backends.ts';
import { ppCfg, S, V } from './support/pp.ts';
import { getSpec } from '../src/device/index.ts';
import { MoEGPT } from '../src/model/gpt.ts';
import { PPParallelRunner } from '../src/train/pp-parallel.ts';
import { parsePipelineFlags, type RawPipelineFlags } from '../src/train/pipeline-flags.ts';
import { STAGE_RECOMPUTE_CLASSES } from '../src/parallel/pp/stage-memory-rules.ts';
import { budgetLevels } from '../src/parallel/pp/stage-budget.ts';

const b = 2, M = 4, TOL = 1e-7, cfg = ppCfg();
const mbs = Array.from({ length: M }, (_, m) => ({
  tokens: Int32Array.from({ length: b * S }, (_, i) => (i * 7 + 3 + m) % V), targets: Int32Array.from({ length: b * S }, (_, i) => (i * 5 + 1 + m) % V), batch: b, seqLen: S,
}));

function runner(raw: RawPipelineFlags) {
  const { flags, problems } = parsePipelineFlags('pp=2,ep=2', { schedule: '1f1b', ...raw }, {}, {}, cfg, M);
  assert.equal(problems, []);
  const host = new MoEGPT(cfg, 5), r = new PPParallelRunner(host, flags!, getSpec('ascend-910b'), b * M, S, M, 1);
  return { host, r, done: () => { r.dispose(); host.dispose(); } };
}

function stepOf(raw: RawPipelineFlags, steps = 1) {
  const x = runner(raw);
  const outs = Array.from({ length: steps }, () => x.r.step(x.host, mbs));
  const last = outs[steps - 1], grads = new Map([...last.grads.grads].map(([n, t]) => [n, t.dataSync() as Float32Array]));
  const res = { loss: last.loss, grads, act: last.perDevicePeakByCategory.map((c) => c.activations), budgets: outs.map((o) => o.budget), seconds: last.report.stepSeconds };
  outs.forEach((o) => o.grads.dispose());
  x.done();
  return res;
}

forEachBackend('PP × EP: --memory-budget planned per stage', (test) => {
  test('budget between full-supported-recompute and no-plan peaks: every device fits, numbers unchanged, plan explained and cached', () => {
    const ref = stepOf({}), full = stepOf({ recompute: STAGE_RECOMPUTE_CLASSES.join(',') });
    const hi = Math.max(...ref.act), lo = Math.max(...full.act);
    assert.ok(lo < hi, `full recompute ${lo} < no plan ${hi}`);
    const budget = Math.round((lo + hi) / 2);
    const r = stepOf({ memoryBudget: String(budget) }, 2);
    assert.is(r.loss, ref.loss, 'loss');
    assert.is(r.grads.size, ref.grads.size);
    for (const [k, g] of ref.grads) {
      const h = r.grads.get(k)!;
      let d = 0;
      for (let i = 0; i < g.length; i++) d = Math.max(d, Math.abs(g[i] - h[i]));
      assert.ok(d <= TOL, `${k}: max |Δ| ${d}`);
    }
    const [b1, b2] = r.budgets;
    assert.ok(b1 && b2);
    assert.is(b1!.budgetBytes, budget);
    assert.equal(b1!.noPlanPeaks, ref.act, 'level 0 = the run without a plan');
    for (const x of [b1!, b2!]) {
      x.executedPeaks.forEach((p, d) => assert.ok(p <= budget, `device ${d}: executed ${p} > budget ${budget}`));
      assert.equal(x.executedPeaks, x.predictedPeaks, 'executed = predicted (same simulation)');
    }
    assert.is(b2!.levelsMeasured, b1!.levelsMeasured, 'plan cached: no re-planning on step 2');
    assert.equal(r.act, b2!.executedPeaks);
    // explained: each stage's classes and the lowest level that fits (a stage already under budget gets none)
    const levels = budgetLevels(cfg, b, S);
    assert.is(levels[0].recompute.length + levels[0].swap.length, 0);
    for (const c of b1!.stages) {
      assert.ok(c.plan.startsWith('recompute '), c.plan);
      assert.ok(Math.max(...c.predictedPeaks) <= budget);
      const stageNoPlan = Math.max(...b1!.noPlanPeaks.slice(c.stage * 2, c.stage * 2 + 2));
      assert.is(c.level === 0, stageNoPlan <= budget, `stage ${c.stage}: level ${c.level} vs no-plan ${stageNoPlan}`);
      for (const cls of levels[c.level].recompute) assert.ok(STAGE_RECOMPUTE_CLASSES.includes(cls));
    }
    assert.ok(b1!.stages.some((c) => c.level > 0), 'some stage plans something');
    assert.ok(Math.abs(b2!.addedSeconds - (b2!.plannedStepSeconds - b2!.noPlanStepSeconds)) < 1e-12);
    assert.ok(b2!.addedSeconds >= 0, `recompute adds time: ${b2!.addedSeconds}`);
    assert.is(b2!.plannedStepSeconds, b1!.plannedStepSeconds, 'added time measured on the planning step, kept');
  });

  test('an impossible budget fails naming the stage, the device, its peak and the best achievable', () => {
    const x = runner({ memoryBudget: '1024' });
    try {
      assert.throws(() => x.r.step(x.host, mbs), (e: Error) => /--memory-budget 1024 B cannot be met: stage \d device \d+ has an activation peak of \d+ B without a plan; the best achievable .* is \d+ B on device \d+/.test(e.message));
    } finally { x.done(); }
  });
});
