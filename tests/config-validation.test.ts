// Bad model configs are rejected up front with every problem listed at once.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ConfigError, PRESETS, resolveConfig, validateConfig, type ModelConfig } from '../src/model/config.ts';

const test = suite('config validation');

test('every preset is valid', () => {
  for (const [name, cfg] of Object.entries(PRESETS)) assert.equal(validateConfig(cfg), [], name);
});

test('all problems are reported together', () => {
  const bad: ModelConfig = structuredClone(PRESETS.tiny);
  bad.moe.numExperts = 10;
  bad.moe.topk = 12;           // top-k larger than experts
  bad.moe.numGroups = 4;       // 10 experts not divisible by 4 groups
  bad.moe.groupTopk = 2;
  bad.hiddenSize = -3;
  bad.numDenseLayers = 9;
  const problems = validateConfig(bad);
  const text = problems.join('\n');
  assert.ok(problems.length >= 5, text);
  assert.match(text, /topk \(12\) must be <= moe\.numExperts \(10\)/);
  assert.match(text, /numExperts \(10\) must be divisible by moe\.numGroups \(4\)/);
  assert.match(text, /hiddenSize must be a positive integer/);
  assert.match(text, /numDenseLayers/);
});

test('group-limited top-k that cannot be satisfied is rejected', () => {
  const cfg: ModelConfig = structuredClone(PRESETS.tiny);
  cfg.moe.numExperts = 16; cfg.moe.topk = 8; cfg.moe.numGroups = 8; cfg.moe.groupTopk = 2; // 2 groups × 2 experts < 8
  assert.match(validateConfig(cfg).join('\n'), /group-limited top-k impossible/);
});

test('resolveConfig applies deep overrides and throws ConfigError listing problems', () => {
  const cfg = resolveConfig('tiny', { hiddenSize: 64, moe: { numExperts: 32 } });
  assert.is(cfg.hiddenSize, 64);
  assert.is(cfg.moe.numExperts, 32);
  assert.is(cfg.moe.topk, PRESETS.tiny.moe.topk);
  assert.is(PRESETS.tiny.moe.numExperts, 256, 'presets are not mutated');
  try {
    resolveConfig('tiny', { moe: { topk: 300, capacityFactor: -1 } });
    assert.unreachable('should throw');
  } catch (e) {
    assert.instance(e, ConfigError);
    assert.is((e as ConfigError).problems.length, 2);
    assert.match((e as Error).message, /2 problems/);
  }
  assert.throws(() => resolveConfig('nope'), /unknown preset 'nope'/);
});

test.run();
