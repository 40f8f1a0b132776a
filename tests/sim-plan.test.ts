// Plans from CLI flags: invalid inputs rejected with every problem listed; paper defaults; export flags.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { PlanError, planFromFlags, simulatePlan } from '../src/sim/plan.ts';
import { exportArgs } from '../src/sim/export.ts';

const test = suite('sim-plan');

function problems(f: Parameters<typeof planFromFlags>[0]): string[] {
  try { planFromFlags(f); } catch (e) { if (e instanceof PlanError) return e.problems; throw e; }
  return [];
}

test('unknown device and a layout that does not divide: every problem listed', () => {
  const p = problems({ device: 'tpu-v9', devices: '1000', tp: '3', pp: '16', ep: '7', recompute: 'sometimes' });
  assert.ok(p.some((x) => x.includes("unknown device 'tpu-v9'")), p.join('\n'));
  assert.ok(p.some((x) => x.includes('devices (1000) not divisible by TP·CP·PP')), p.join('\n'));
  assert.ok(p.some((x) => x.includes('numHeads (128) not divisible by TP (3)')), p.join('\n'));
  assert.ok(p.some((x) => x.includes('numExperts (256) not divisible by EP (7)')), p.join('\n'));
  assert.ok(p.some((x) => x.includes('--recompute must be')), p.join('\n'));
  assert.ok(p.length >= 5);
});

test('global batch and TP-in-node checks', () => {
  const p = problems({ devices: '6144', tp: '16', pp: '16', ep: '32', gbs: '1000' });
  assert.ok(p.some((x) => x.includes('TP (16) must fit in one node')), p.join('\n'));
  assert.ok(p.some((x) => x.includes('globalBatch (1000) not divisible')), p.join('\n'));
});

test('paper preset defaults to the optimised setup on 6144 NPUs; --baseline to 4096', () => {
  const opt = planFromFlags({});
  assert.is(opt.devices, 6144);
  assert.is(opt.device, 'ascend-910b');
  assert.ok(opt.options.hierarchicalA2A && opt.options.adaptivePipeOverlap && opt.options.swapAttention);
  const r = simulatePlan(opt);
  assert.ok(r.mfu > 0.28 && r.mfu < 0.32, `${r.mfu}`);
  const base = planFromFlags({ baseline: true });
  assert.is(base.devices, 4096);
  assert.is(base.options.recompute, 'full');
});

test('export: real Megatron / MindSpeed flag names', () => {
  const plan = planFromFlags({});
  const ms = exportArgs(plan, 'mindspeed').args.join(' ');
  for (const f of ['--tensor-model-parallel-size 8', '--pipeline-model-parallel-size 16', '--expert-model-parallel-size 4', '--moe-tp-extend-ep',
    '--num-layers-per-virtual-pipeline-stage 2', '--moe-hierarchical-alltoallv', '--swap-attention', '--recompute-mla-up-proj',
    '--recompute-activation-function', '--noop-layers 31,62,63', '--num-layers 64', '--num-experts 256', '--moe-router-topk 8'])
    assert.ok(ms.includes(f), f);
  const meg = exportArgs(planFromFlags({ baseline: true }), 'megatron').args.join(' ');
  for (const f of ['--expert-model-parallel-size 32', '--recompute-granularity full', '--recompute-method uniform', '--multi-latent-attention', '--mtp-num-layers 1'])
    assert.ok(meg.includes(f), f);
});

test.run();
