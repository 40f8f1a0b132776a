// Expert parallelism over 8 simulated Ascend 910B NPUs on 2 nodes × 4 (EP = DP = 8): one training step
// of a small MoE model with the flat all-to-all dispatcher and with the paper's hierarchical
// all-to-all (inter-node all-gather-like phase once per token and remote node, then intra-node
// all-to-all), checked equal to each other, printing the inter-node bytes of the token dispatch/combine,
// the simulated step time, per-device memory peaks and the comm ledger.
//   npx tsx examples/parallel-ep8-hierarchical.ts
import { initBackend } from '../src/backend/tf.ts';
import { resolveConfig } from '../src/model/config.ts';
import { Cluster, formatBytes, getSpec } from '../src/device/index.ts';
import { ParallelModel } from '../src/parallel/parallel-model.ts';
import type { DispatcherKind } from '../src/parallel/ep/ep-moe.ts';

const cfg = resolveConfig('tiny', {
  hiddenSize: 64, numLayers: 3, numDenseLayers: 1, denseIntermediateSize: 128, numHeads: 4, vocabSize: 128,
  mla: { qLoraRank: 32, kvLoraRank: 32, qkNopeHeadDim: 16, qkRopeHeadDim: 8, vHeadDim: 16 },
  // top-8 of 32 experts (4 per NPU), sigmoid router ×2.5, the paper's EP-group balancing loss
  moe: { numExperts: 32, topk: 8, expertHiddenSize: 32, auxLoss: [{ type: 'ep-group', coeff: 1e-2 }] },
});
const B = 16, S = 32;
const tokens = Int32Array.from({ length: B * S }, (_, i) => (i * 31 + 7) % cfg.vocabSize);
const targets = Int32Array.from({ length: B * S }, (_, i) => (i * 17 + 3) % cfg.vocabSize);

function run(dispatcher: DispatcherKind) {
  const cluster = new Cluster({ spec: getSpec('ascend-910b'), nodes: 2, devicesPerNode: 4, dtype: 'bf16' });
  const pm = new ParallelModel(cfg, cluster, { layout: 'ep=8,dp=8', seed: 1, dispatcher });
  const report = pm.forwardBackward(tokens, targets, B, S);
  const tokenBytes = (link: 'inter' | 'intra') => cluster.commLedger.records
    .filter((r) => r.link === link && /^ep\.(dispatch|combine)/.test(r.label) && !r.label.includes('probs'))
    .reduce((a, r) => a + r.bytes, 0);
  const out = { dispatcher, loss: report.loss, inter: tokenBytes('inter'), intra: tokenBytes('intra'), summary: pm.summary(), ledger: cluster.commLedger.summary() };
  pm.dispose();
  return out;
}

await initBackend('wasm');
const flat = run('alltoall'), hier = run('alltoall-hierarchical');
console.log(`EP=8 on 2 nodes x 4 NPUs, top-${cfg.moe.topk} of ${cfg.moe.numExperts} experts, ${B * S} tokens, bf16 wire bytes\n`);
console.log('dispatcher              loss        token a2a inter-node   intra-node   step (simulated)');
for (const r of [flat, hier])
  console.log(`${r.dispatcher.padEnd(22)}  ${r.loss.toFixed(6)}  ${formatBytes(r.inter).padStart(18)}  ${formatBytes(r.intra).padStart(11)}  ${(r.summary.makespan * 1e3).toFixed(3)} ms`);
console.log(`\nhierarchical / flat inter-node bytes = ${(hier.inter / flat.inter).toFixed(3)}  (a token crosses to a remote node once, not once per expert there)`);
console.log(`loss difference ${Math.abs(hier.loss - flat.loss).toExponential(2)} (float summation order only)\n`);
console.log('per-device memory peaks (hierarchical run):');
for (const m of hier.summary.memory.slice(0, 2))
  console.log(`  npu${m.rank}: peak ${formatBytes(m.peak)}  ` + Object.entries(m.byCategory).map(([k, v]) => `${k} ${formatBytes(v.peak)}`).join(', '));
console.log('\ncomm ledger (hierarchical run):');
for (const r of hier.ledger) console.log(`  ${r.op.padEnd(30)} ${r.group.padEnd(6)} ${r.link.padEnd(6)} ${formatBytes(r.bytes).padStart(11)}  ${r.messages} msgs`);
