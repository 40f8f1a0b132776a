// Memory planner on a tiny-like layout: fit 30% of the no-recompute activation peak with the least
// added step time, choosing recompute or swap per (tensor class, layer), with the reasons.
//   npx tsx examples/pipeline-memory-planner.ts
// Layout: the `tiny` preset (4 layers: 1 dense + 3 MoE, MLA, 256 experts top-8, sandwich norm),
// seq 256 × micro-batch 4, fp32 saved activations (what SavedActivations counts).
// Device: Ascend 910B from src/device/specs.ts — 256 TFLOPS × the GEMM-efficiency of its curve at
// < 1 GFLOP (every tiny GEMM is that small: 0.09), host link PCIe 4.0 x16 at its efficiency.
import { PRESETS } from '../src/model/config.ts';
import { getSpec } from '../src/device/specs.ts';
import { curveEfficiency } from '../src/device/cost.ts';
import { modelLayout, bytesByModule } from '../src/parallel/memory/descriptors.ts';
import { makePlan, type RecomputePolicy, type SwapPolicy } from '../src/parallel/memory/policy.ts';
import { evaluatePlan, type MemoryCostModel } from '../src/parallel/memory/cost.ts';
import { planMemory } from '../src/parallel/memory/planner.ts';

const spec = getSpec('ascend-910b');
const eff = curveEfficiency(spec.efficiency.gemm, 0.5);
const flops = spec.peakFlops.bf16! * eff;
const hostBandwidth = spec.hostLink.bandwidth * spec.hostLink.efficiency;
const MB = (b: number) => `${(b / 1e6).toFixed(2)} MB`;
const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
console.log(`device ${spec.name}: ${(flops / 1e12).toFixed(1)} TFLOP/s effective (efficiency ${eff}), host link ${(hostBandwidth / 1e9).toFixed(1)} GB/s per direction`);

const layouts: { title: string; layers: number[]; inFlight: number }[] = [
  { title: 'pp=1: all 4 layers, 1 micro-batch in flight', layers: [0, 1, 2, 3], inFlight: 1 },
  { title: 'pp=2 rank 0: layers 0-1, 1F1B keeps min(p − r, M) = 2 in flight', layers: [0, 1], inFlight: 2 },
  { title: 'pp=4 rank 0: layer 0 (dense), 4 in flight', layers: [0], inFlight: 4 },
];

for (const [i, L] of layouts.entries()) {
  const layout = modelLayout(PRESETS.tiny, { seqLen: 256, microBatchSize: 4, layers: L.layers });
  const hw: MemoryCostModel = { flops, hostBandwidth, inFlight: L.inFlight, forwardFlops: layout.forwardFlops };
  const base = evaluatePlan(makePlan(layout.descs), hw);
  console.log(`\n=== ${L.title} ===`);
  if (i === 0) {
    console.log('saved bytes per micro-batch by class: ' + [...bytesByModule(layout.descs)].map(([k, v]) => `${k} ${MB(v)}`).join(', '));
    console.log(`F ${(base.forwardTime * 1e6).toFixed(1)} µs, B ${(base.backwardTime * 1e6).toFixed(1)} µs per micro-batch`);
    console.log('\nfixed policies (peak / added step time):');
    const fixed: [string, RecomputePolicy, SwapPolicy?][] = [
      ['none', { recomputeGranularity: 'none' }],
      ['full (uniform, N=1)', { recomputeGranularity: 'full' }],
      ['selective core_attn (Megatron default)', { recomputeGranularity: 'selective' }],
      ['selective mla_up_proj,moe_act,mlp_act,norm,permute (Pangu)', { recomputeGranularity: 'selective', recomputeModules: ['mla_up_proj', 'moe_act', 'mlp_act', 'norm', 'permute'] }],
      ['  + swap core_attn', { recomputeGranularity: 'selective', recomputeModules: ['mla_up_proj', 'moe_act', 'mlp_act', 'norm', 'permute'] }, { offloadModules: ['core_attn'] }],
    ];
    for (const [name, r, s] of fixed) {
      const c = evaluatePlan(makePlan(layout.descs, r, s), hw);
      console.log(`  ${name.padEnd(58)} ${pct(c.peakBytes / base.peakBytes).padStart(6)}  +${pct(c.addedFraction)}`);
    }
  }
  const budget = 0.3 * base.peakBytes;
  const r = planMemory(layout.descs, { ...hw, budgetBytes: budget });
  console.log(`\nplanner, budget 30% = ${MB(budget)} of ${MB(base.peakBytes)}: ${r.fits ? 'fits' : 'DOES NOT FIT'}, ` +
    `peak ${MB(r.cost.peakBytes)} (${pct(r.cost.peakBytes / base.peakBytes)}), added step time ${pct(r.cost.addedFraction)} ` +
    `(recompute ${(r.cost.recomputeTime * 1e6).toFixed(1)} µs, swap ${MB(r.cost.swapBytes)} with ${(r.cost.swapExposedTime * 1e6).toFixed(1)} µs exposed)`);
  for (const e of r.explanation)
    console.log(`  ${e.module.padEnd(13)} ${MB(e.bytes).padStart(9)}  ${e.decision.padEnd(9)} saved ${MB(e.peakSaved).padStart(9)}  +${(e.timeAdded * 1e6).toFixed(2).padStart(6)} µs  ${e.why}`);
}
