// One MoE layer of the `tiny` preset (256 experts, top-8, hidden 128, expert size 64, 1 shared
// expert), forward + backward on wasm: shapes, routing stats, saved activations with bytes,
// gradient norms, and the achieved GFLOP/s of model FLOPs.
//   npx tsx examples/moe-layer.ts [tokens=512] [iters=5]
import { tf, initBackend } from '../src/backend/tf.ts';
import { resolveConfig } from '../src/model/config.ts';
import { ParamStore, GradStore, defaultContext } from '../src/model/module.ts';
import { SavedActivations } from '../src/model/saved.ts';
import { MoELayer } from '../src/model/moe/moe-layer.ts';
import type { RoutingPlan } from '../src/model/routing/plan.ts';

async function main() {
  await initBackend('wasm');
  const T = Number(process.argv[2] ?? 512), iters = Number(process.argv[3] ?? 5), S = Math.min(T, 128), B = T / S;
  const cfg = resolveConfig('tiny');
  const { hiddenSize: H, moe } = cfg;
  const init = (shape: number[], role: string, seed: number) =>
    tf.randomNormal(shape, 0, role === 'out' ? 0.02 / Math.sqrt(2 * cfg.numLayers) : 0.02, 'float32', seed);
  const params = new ParamStore();
  const layer = new MoELayer(cfg, 1, params, 'layers.1.moe', init);
  console.log(`tiny MoE layer: E=${moe.numExperts} k=${moe.topk} H=${H} F=${moe.expertHiddenSize} shared=${moe.numSharedExperts} ` +
    `score=${moe.scoreFunction} scale=${moe.topkScalingFactor} aux=${JSON.stringify(moe.auxLoss)} z=${moe.zLossCoeff}; x [${B}, ${S}, ${H}]`);
  console.log(`params: ${params.names().map((n) => `${n} [${params.get(n).shape}]`).join(', ')}`);
  const x = tf.randomNormal([B, S, H], 0, 1, 'float32', 1), dy = tf.randomNormal([B, S, H], 0, 1e-2, 'float32', 2);

  const step = (report: boolean) => {
    const ctx = defaultContext({ lossScale: 1 });
    const rec = new SavedActivations('layers.1.moe');
    const grads = new GradStore();
    const t0 = performance.now();
    const y = layer.forward(x, rec, ctx);
    const t1 = performance.now();
    const dx = layer.backward(dy, rec, grads, ctx);
    dx.dataSync();
    const t2 = performance.now();
    if (report) {
      const plan = rec.getHost<RoutingPlan>('plan');
      const tpe = plan.permute.tokensPerExpert;
      console.log(`\ny [${y.shape}], dx [${dx.shape}]; permuted rows N = ${plan.permute.numRows} (T·k = ${T * moe.topk})`);
      console.log(`tokensPerExpert: min ${Math.min(...tpe)} max ${Math.max(...tpe)} mean ${(plan.permute.numRows / moe.numExperts).toFixed(1)}; ` +
        `aux ${JSON.stringify(ctx.routerStats[0].auxLosses)}`);
      console.log('\nsaved activations:');
      for (const i of rec.list()) console.log(`  ${i.name.padEnd(16)} [${i.shape.join(', ')}]`.padEnd(40) + `${(i.bytes / 1024).toFixed(1)} KiB`);
      console.log(`  total resident ${(rec.residentBytes() / 1024).toFixed(1)} KiB (+ host plan)`);
      console.log('\ngradient norms:');
      for (const n of params.names()) console.log(`  ${n.padEnd(28)} ${tf.tidy(() => tf.norm(grads.get(n)!).dataSync()[0]).toExponential(3)}`);
    }
    tf.dispose([y, dx]); rec.dispose(); grads.dispose();
    return [t1 - t0, t2 - t1];
  };
  step(true);
  const times: number[][] = [];
  for (let i = 0; i < iters; i++) times.push(step(false));
  const med = (a: number[]) => a.sort((p, q) => p - q)[a.length >> 1];
  const fwd = med(times.map((t) => t[0])), bwd = med(times.map((t) => t[1]));
  // model FLOPs: forward 2·(routed T·k·3·H·F + shared T·3·H·Fs + router T·H·E), backward 2× forward
  const Fs = moe.numSharedExperts * moe.expertHiddenSize;
  const fwdFlops = 2 * (T * moe.topk * 3 * H * moe.expertHiddenSize + T * 3 * H * Fs + T * H * moe.numExperts);
  console.log(`\nfwd ${fwd.toFixed(1)} ms, bwd ${bwd.toFixed(1)} ms (median of ${iters}); ` +
    `${(3 * fwdFlops / 1e9).toFixed(2)} GFLOP → ${((3 * fwdFlops) / ((fwd + bwd) * 1e6)).toFixed(2)} GFLOP/s`);
}
main().catch((e) => { console.error(e); process.exit(1); });
