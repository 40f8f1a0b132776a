// Adaptive pipe overlap (Pangu Ultra MoE §6.2): how much EP all-to-all the 1F1B steady state hides.
//   npx tsx examples/pipeline-overlap.ts
// Setting (documented, see docs/pipeline.md): Pangu-Ultra-MoE layer (h 7680, top-8 of 256 experts,
// expert FFN 2048, one shared expert), micro-batch 1 × 4096 tokens, TP=8 with SP → 512 tokens per
// rank, MLA ≈ 0.56 GFLOP per token; EP=8 over 2 nodes × 4 NPUs (hierarchical a2a: inter-node
// all-gather + intra-node a2a), PP=4 with 16 layer slots per stage (61 → 64), M=32 micro-batches.
// Ascend 910B: 256 TFLOPS × 0.55 effective, HCCS 196 GB/s × 0.76, RoCE 25 GB/s × 0.9.
import { compareOverlap, moeLayerTimes, stepOverlap, type EPNetwork, type MoELayerShape } from '../src/parallel/pipeline/overlap.ts';

const shape: MoELayerShape = { tokens: 512, hidden: 7680, topk: 8, expertFfn: 2048, sharedFfn: 2048, attnFlopsPerToken: 0.56e9, bytesPerElement: 2 };
const net: EPNetwork = { epSize: 8, ranksPerNode: 4, intraBw: 196e9 * 0.76, interBw: 25e9 * 0.9, intraLatency: 1e-6, interLatency: 2e-6, flops: 256e12 * 0.55 };
const ms = (s: number) => `${(s * 1e3).toFixed(3)} ms`;
const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

function report(title: string, n: EPNetwork): void {
  const t = moeLayerTimes(shape, n);
  console.log(`\n=== ${title} ===`);
  console.log(`per layer, one micro-batch: attnF ${ms(t.attnF)}, mlpF ${ms(t.mlpF)}, sharedF ${ms(t.sharedF)}, ` +
    `dispatch intra ${ms(t.dispatch.intra)} + inter ${ms(t.dispatch.inter)} (combine the same); backward = 2× forward (dX + dW)`);
  const c = compareOverlap(t, 16);
  console.log('mode                       time/stage-pass   compute     EP a2a      hidden');
  for (const [name, r] of [['no overlap (F+B pair)', c.none], ['fb overlap (F+B pair)', c.fb], ['warm-up: forward only', c.selfF], ['cool-down: backward only', c.selfB]] as const)
    console.log(`${name.padEnd(27)}${ms(r.time).padStart(12)}   ${ms(r.computeTime).padStart(10)}  ${ms(r.commTime).padStart(10)}   ${pct(r.hiddenFraction).padStart(6)}`);
  for (const rank of [0, 3]) {
    const s = stepOverlap(t, 16, 4, 32, rank);
    console.log(`step, PP rank ${rank} (warm-up ${s.warmup}, steady ${s.steady}, cool-down ${s.cooldown}): ` +
      `${ms(s.time.none)} → ${ms(s.time.overlapped)} (${pct(1 - s.time.overlapped / s.time.none)} faster), a2a hidden ${pct(s.hiddenFraction)}`);
  }
}

report('EP=8 (2 nodes × 4), PP=4, Ascend 910B', net);
report('sensitivity: RoCE at 1/4 bandwidth (contention with DP/PP traffic)', { ...net, interBw: net.interBw / 4 });
report('sensitivity: HCCS and RoCE both at 1/6 (a2a ≈ half of the un-overlapped step)', { ...net, intraBw: net.intraBw / 6, interBw: net.interBw / 6 });
