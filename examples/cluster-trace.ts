// A small MoE communication pattern on a simulated 2-node, 16-NPU Ascend 910B cluster, written as a
// Chrome / Perfetto trace. Two micro-batches: while micro-batch 0 is dispatched (hierarchical
// all-to-all, then hierarchical combine), micro-batch 1's attention runs on the compute stream, so communication
// overlaps compute. Open the trace at https://ui.perfetto.dev.
//   npx tsx examples/cluster-trace.ts [trace.json]
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tf, initBackend } from '../src/backend/tf.ts';
import { Cluster, getSpec, type RankDispatch, type SimEvent } from '../src/device/index.ts';

const T = 256, H = 512, E = 32, K = 4; // tokens per NPU, hidden, experts (2 per NPU), top-k

/** Random top-k routing, rows sorted by destination rank (expert e lives on rank e / (E / n)). */
function route(n: number, seed: number): RankDispatch[] {
  let s = seed;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  return Array.from({ length: n }, () => {
    const rows: Array<[number, number]> = [];
    for (let t = 0; t < T; t++) {
      const experts = new Set<number>();
      while (experts.size < K) experts.add(Math.floor(rand() * E));
      for (const e of experts) rows.push([Math.floor(e / (E / n)), t]);
    }
    rows.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    return { numTokens: T, rowDest: rows.map((r) => r[0]), rowToken: rows.map((r) => r[1]) };
  });
}

async function main(): Promise<void> {
  await initBackend('wasm');
  const cluster = new Cluster({ spec: getSpec('ascend-910b'), nodes: 2, dtype: 'bf16' }); // 2 x 8 NPUs
  const ep = cluster.world(); // EP = 16 across both nodes
  const n = cluster.size;
  const weights = cluster.devices.map((d) => d.hold(tf.randomNormal([H, H], 0, 0.02, 'float32', d.rank + 1) as tf.Tensor2D, 'weights', 'expert.w'));

  const attnDone: SimEvent[][] = [];
  const tokens: tf.Tensor2D[][] = [];
  for (let mb = 0; mb < 2; mb++) { // issue both attentions first: compute runs ahead of communication
    tokens.push(cluster.devices.map((d) => d.hold(tf.randomNormal([T, H], 0, 1, 'float32', 100 + mb * n + d.rank) as tf.Tensor2D, 'activations', `mb${mb}.x`)));
    attnDone.push(cluster.devices.map((d) => d.charge(`attention mb${mb}`, { gemm: [T, 4 * H, H] })));
  }
  for (let mb = 0; mb < 2; mb++) {
    const dispatch = route(n, 7 + mb);
    const disp = cluster.comm.hierarchicalAllToAll(ep, tokens[mb], dispatch, { label: `dispatch mb${mb}`, after: attnDone[mb] });
    const expertOut = cluster.devices.map((d, r) => {
      const x = d.hold(disp.outputs[r] as tf.Tensor2D, 'activations', `mb${mb}.dispatched`);
      return d.matMul(`experts mb${mb}`, x, weights[r], { after: [disp.events[r]] });
    });
    // combine: expert outputs go back (intra-node, then one partial sum per token and node across nodes)
    const back = cluster.comm.hierarchicalCombine(ep, expertOut.map((e) => e.result), dispatch,
      { label: `combine mb${mb}`, after: expertOut.map((e) => e.event), plan: disp.plan, rowWeights: dispatch.map((d) => new Float32Array(d.rowDest.length).fill(1 / K)) });
    console.log(`mb${mb}: dispatch ${(disp.seconds * 1e6).toFixed(1)} us (inter ${(disp.phase1Seconds * 1e6).toFixed(1)} us), combine ${(back.seconds * 1e6).toFixed(1)} us, rank 0 got back [${back.outputs[0].shape}]`);
    tf.dispose([...back.outputs, ...expertOut.map((e) => e.result)]);
    cluster.devices.forEach((d, r) => { d.free(disp.outputs[r]); d.free(tokens[mb][r]); });
  }
  const grads = weights.map((w) => tf.zerosLike(w));
  const ar = cluster.comm.allReduce(cluster.group('edp', cluster.devices.map((d) => d.rank)), grads, { label: 'expert grads' });
  tf.dispose([...ar.outputs, ...grads]);
  cluster.devices.forEach((d) => d.freeAll());

  console.log(`\n${cluster.timeline.summaryText()}`);
  console.log('communication ledger (bytes):');
  console.log(cluster.commLedger.summaryTable().toMarkdown());
  console.log(`peak HBM npu0: ${(cluster.device(0).hbm.peak / 2 ** 20).toFixed(2)} MiB (${JSON.stringify(cluster.device(0).hbm.snapshot().byCategory)})`);
  const out = process.argv[2] ?? join(tmpdir(), 'ultramoe-cluster-trace.json');
  writeFileSync(out, JSON.stringify(cluster.trace()));
  console.log(`trace: ${out} (${cluster.timeline.events.length} events; open in https://ui.perfetto.dev)`);
}

main().catch((e) => { console.error(e); process.exitCode = 1; });
