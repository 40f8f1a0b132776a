// One micro-batch through the tiny preset (MLA, DSSN, 256 experts top-8) with an explicit forward
// and hand-written backward: losses, router statistics, saved activations by layer, gradients;
// then a few plain-SGD steps on the same batch to show the loss going down.
// Run: npx tsx examples/model-forward-backward.ts [--backend wasm|cpu]
import { tf, initBackend, type BackendName } from '../src/backend/tf.ts';
import { resolveConfig } from '../src/model/config.ts';
import { MoEGPT } from '../src/model/gpt.ts';
import { GradStore, defaultContext } from '../src/model/module.ts';
import { modelFlopsPerToken } from '../src/model/flops-local.ts';

async function main() {
  const backend = (process.argv.includes('--backend') ? process.argv[process.argv.indexOf('--backend') + 1] : 'wasm') as BackendName;
  await initBackend(backend);
  const cfg = resolveConfig('tiny', { numMtpLayers: 1 });
  const B = 2, S = 64;
  const model = new MoEGPT(cfg, 42);
  console.log(`tiny + 1 MTP layer: ${model.params.numel().toLocaleString()} parameters on ${backend}`);

  // a repeated pattern so that a few steps visibly lower the loss
  const tokens = Int32Array.from({ length: B * S }, (_, i) => (i * 7 + (i % 3)) % cfg.vocabSize);
  const targets = Int32Array.from({ length: B * S }, (_, i) => (i % S === S - 1 ? -1 : tokens[i + 1]));

  const ctx = defaultContext();
  const grads = new GradStore();
  const t0 = performance.now();
  const r = model.forwardBackward(tokens, targets, B, S, ctx, grads);
  const ms = performance.now() - t0;
  console.log(`step: ${ms.toFixed(0)} ms, ${((modelFlopsPerToken(cfg, S) * B * S) / ms / 1e6).toFixed(2)} GFLOP/s of model FLOPs`);
  console.log('losses:', Object.fromEntries(Object.entries(r).map(([k, v]) => [k, +v.toFixed(5)])));
  for (const st of ctx.routerStats) {
    const c = Array.from(st.tokensPerExpert), mean = c.reduce((a, b) => a + b, 0) / c.length;
    console.log(`  MoE layer ${st.layer}: max/mean load ${(Math.max(...c) / mean).toFixed(2)}, aux ${JSON.stringify(st.auxLosses)}`);
  }
  const byRecord = new Map<string, number>();
  for (const e of model.savedActivationReport()) byRecord.set(e.record, (byRecord.get(e.record) ?? 0) + e.bytes);
  console.log('saved activations (KiB):', Object.fromEntries([...byRecord].map(([k, v]) => [k, Math.round(v / 1024)])));
  console.log('layers.1 entries:', model.savedActivationReport().filter((e) => e.record === 'layers.1').map((e) => `${e.name}[${e.shape}]`).join(' '));
  console.log(`gradients: ${grads.grads.size} tensors, |g| = ${Math.sqrt([...grads.grads.values()].reduce((a, g) => a + tf.sum(tf.square(g)).dataSync()[0], 0)).toFixed(4)}`);
  grads.dispose();

  const lr = 0.05;
  for (let step = 1; step <= 4; step++) {
    const g = new GradStore();
    const l = model.forwardBackward(tokens, targets, B, S, defaultContext(), g);
    tf.tidy(() => { for (const [n, t] of g.grads) { const v = model.params.get(n); v.assign(tf.sub(v, tf.mul(t, lr))); } });
    g.dispose();
    console.log(`SGD step ${step}: loss ${l.loss.toFixed(4)} (lm ${l.lmLoss.toFixed(4)}, mtp ${l.mtpLoss.toFixed(4)})`);
  }
  console.log(`after: lm loss ${model.forwardLoss(tokens, targets, B, S).lmLoss.toFixed(4)}; live tensors ${tf.memory().numTensors}`);
  model.dispose();
}

main().catch((e) => { console.error(e instanceof Error ? e.stack : e); process.exit(1); });
