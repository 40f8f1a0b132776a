// Adaptive pipe overlap executed on the simulated cluster (Pangu Ultra MoE §6.2, issue 6.2): an EP=8 ×
// PP=4 pipelined MoE training step on 32 Ascend 910B NPUs (4 nodes × 8), overlap off vs on, measured
// on the timeline, next to the pure model (src/parallel/pipeline/overlap.ts). Writes Perfetto traces.
//   npx tsx examples/overlap-ep8-pp4.ts [out-dir] [microBatches] [layersPerStage] [zipf]
// Setting (docs/overlap.md): Pangu-Ultra-MoE layer as one rank of TP=8+SP sees it (512 tokens per
// micro-batch, h 7680, top-8 of 256 experts, expert/shared FFN 2048, MLA 0.56 GFLOP/token); each stage's
// EP group = 2 nodes × 4 NPUs (hierarchical a2a); default 4 layers per stage, M=16, uniform routing.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { compareOverlapModes, type OverlapRunConfig } from '../src/parallel/overlap/index.ts';

const out = process.argv[2] ?? join(tmpdir(), 'ultramoe-overlap');
const M = Number(process.argv[3] ?? 16), L = Number(process.argv[4] ?? 4), zipf = Number(process.argv[5] ?? 0);
const ms = (s: number) => `${(s * 1e3).toFixed(1)} ms`;
const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

function report(title: string, cfg: OverlapRunConfig, traces: boolean): void {
  const { off, on, pure } = compareOverlapModes(cfg);
  const t = pure[0].times;
  console.log(`\n=== ${title} ===`);
  console.log(`layer, one micro-batch (stage 0 means): attnF ${ms(t.attnF)}, mlpF ${ms(t.mlpF)} (slowest EP rank), sharedF ${ms(t.sharedF)}, ` +
    `a2a intra ${ms(t.dispatch.intra)} + inter ${ms(t.dispatch.inter)} per dispatch/combine; backward = dX + dW`);
  console.log('| mode | step time | idle compute | pipeline bubble | EP a2a busy (Σ 32 NPUs) | hidden, steady state | hidden, whole step | compute busy (Σ) | ops |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const [name, r] of [['overlap off', off], ['overlap on', on]] as const) {
    const s = r.stats;
    console.log(`| ${name} | ${ms(s.stepTime)} | ${pct(s.bubble)} | ${pct(s.ppBubble)} | ${ms(s.epCommBusy)} | ${pct(s.steady.fraction)} | ${pct(s.whole.fraction)} | ${ms(s.computeBusy)} | ${r.ops} |`);
  }
  console.log(`speed-up ${(off.stats.stepTime / on.stats.stepTime).toFixed(3)}x`);
  console.log('\n| stage | hidden steady (timeline / pure fb) | hidden step (timeline on / pure stepOverlap) | steady F+B pair: off / pure none | on / pure fb | idle compute off / on |');
  console.log('|---|---|---|---|---|---|');
  for (const p of pure) {
    const a = off.stats.stages[p.stage], b = on.stats.stages[p.stage];
    console.log(`| ${p.stage} | ${pct(b.steady.fraction)} / ${pct(p.steadyHidden)} | ${pct(b.whole.fraction)} / ${pct(p.stepHidden)} | ` +
      `${ms(a.steadyPairTime)} / ${ms(p.nonePairTime)} | ${ms(b.steadyPairTime)} / ${ms(p.fbPairTime)} | ${pct(a.bubble)} / ${pct(b.bubble)} |`);
  }
  if (!traces) return;
  mkdirSync(out, { recursive: true });
  for (const [name, r] of [['off', off], ['on', on]] as const) {
    const f = join(out, `overlap-ep8-pp4-${name}.trace.json`);
    writeFileSync(f, JSON.stringify(r.cluster.trace()));
    console.log(`trace (${name}): ${f} (${r.cluster.timeline.events.length} events; open in https://ui.perfetto.dev)`);
  }
}

report(`EP=8 × PP=4 on 4 × 8 Ascend 910B, ${L} layers/stage, M=${M}, routing ${zipf ? `Zipf ${zipf}` : 'uniform'}`, { microBatches: M, layersPerStage: L, routing: { zipf, seed: 1 } }, true);
if (process.argv.length <= 3) {
  report('sensitivity: Zipf-1.2 routing (expert load imbalance)', { microBatches: M, layersPerStage: L, routing: { zipf: 1.2, seed: 1 } }, false);
  report('sensitivity: 128 tokens per micro-batch (a2a latency-heavy, compute 4× smaller)', { microBatches: M, layersPerStage: L, shape: { tokens: 128, hidden: 7680, experts: 256, topk: 8, expertFfn: 2048, sharedFfn: 2048, attnFlopsPerToken: 0.56e9 } }, false);
}
