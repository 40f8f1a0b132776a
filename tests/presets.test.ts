// Preset sizes (paper / model-card numbers), the instantiated tiny model's parameter count against
// countParams, and local model FLOPs against the simulator's breakdown.
import { forEachBackend, assert } from './support/backends.ts';
import { PRESETS, resolveConfig } from '../src/model/config.ts';
import { countParams } from '../src/model/params-count.ts';
import { MoEGPT } from '../src/model/gpt.ts';
import { modelFlopsPerToken } from '../src/model/flops-local.ts';
import { modelFlops } from '../src/model/flops.ts';

const within = (got: number, want: number, rel: number, what: string) =>
  assert.ok(Math.abs(got - want) <= rel * want, `${what}: ${got.toExponential(4)} vs ${want.toExponential(4)} (±${rel * 100}%)`);

// Backend-independent (counts and arithmetic): run once, on wasm (random init on cpu is slow).
forEachBackend('presets', (test) => {
  test('Pangu Ultra MoE: 718B total, 39B activated (±1%)', () => {
    const c = countParams(PRESETS['pangu-ultra-moe-718b']);
    within(c.total, 718e9, 0.01, 'total'); within(c.activated, 39e9, 0.01, 'activated');
  });
  test('DeepSeek-V3: 671B total, 37B activated (±2%)', () => {
    const c = countParams(PRESETS['deepseek-v3-671b']);
    within(c.total, 671e9, 0.02, 'total'); within(c.activated, 37e9, 0.02, 'activated');
  });
  for (const preset of ['tiny', 'small']) {
    test(`instantiated ${preset} with one MTP layer: numel = countParams (total and with MTP)`, () => {
      const cfg = resolveConfig(preset, { numMtpLayers: 1 });
      const m = new MoEGPT(cfg, 1);
      const c = countParams(cfg);
      assert.is(m.params.numel(), c.totalWithMtp);
      const mtp = m.params.names().filter((n) => n.startsWith('mtp.')).reduce((a, n) => a + m.params.get(n).size, 0);
      assert.is(m.params.numel() - mtp, c.total);
      m.dispose();
    });
  }
  test('GQA and tied variants: numel = countParams', () => {
    for (const ov of [{ attention: 'gqa' as const, numKvHeads: 2 }, { tieEmbeddings: true, norm: 'pre' as const }]) {
      const cfg = resolveConfig('tiny', { ...ov, moe: { numExperts: 16 } });
      const m = new MoEGPT(cfg, 1);
      assert.is(m.params.numel(), countParams(cfg).total);
      m.dispose();
    }
  });
  test('modelFlopsPerToken agrees with src/model/flops.ts (Megatron convention)', () => {
    for (const name of Object.keys(PRESETS)) for (const s of [128, 4096]) {
      const cfg = PRESETS[name];
      within(modelFlopsPerToken(cfg, s), modelFlops(cfg, { seqLen: s }).flopsPerToken, 1e-9, `${name} s=${s}`);
    }
  });
}, ['wasm']);
