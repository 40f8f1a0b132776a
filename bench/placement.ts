// Dynamic expert placement benchmark: `npx tsx bench/placement.ts [--steps S] [--quick]`.
// Writes bench/results/placement.json and prints two tables.
//
// Time model (perf-model.md §5): the MoE layer of a step ends when its most-loaded device finishes, and
// expert compute is linear in tokens, so T_layer ∝ max_d deviceLoad_d (tokens). All-to-all volume is
// not modelled (equal across placements to first order); relative times are therefore max-load ratios.
//   A. snapshot quality: per sampled step and layer, solve on that step's loads and report max/mean
//      device load (1.0 = perfect) and time relative to static contiguous placement.
//   B. dynamic placement over a drifting trace: the controller (EMA 0.9 predictor, CV gate 0.08, period
//      50) re-places layers from *predicted* loads; each step is scored on its *actual* loads with the
//      placement in force before that step. Gain = 1 - T_dynamic / T_static. 'migr 0.5%' is our solver
//      with migration awareness (also searches from the current plan, accepts 0.5% more predicted max
//      load for fewer moved slots); migration time itself is not in the model, the slot count is reported.
// End-to-end: each part-B row's load imbalance ρ = Σ max device load / Σ mean device load (over steps and
// layers) goes into the analytical simulator (src/sim, read-only) as the expert-load imbalance of the
// paper's optimised setup (Pangu Ultra MoE 718B, 6144 Ascend 910B, everything else fixed) → simulated MFU.
// Traces in bench/traces/*.json (format 'ultramoe.expert-load-trace', see docs/placement.md) run through
// part B too, with D = the largest divisor of N that is <= min(32, N/2), R = N + D, one node.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { PlacementController } from '../src/parallel/placement/controller.ts';
import { solveLayer } from '../src/parallel/placement/solve.ts';
import { parseTrace, syntheticZipfTrace, type ExpertLoadTrace } from '../src/parallel/placement/trace.ts';
import { balance, deviceLoads, type PlacementSpec, type SolverName } from '../src/parallel/placement/types.ts';
import { simulate } from '../src/sim/cost-model.ts';
import { modelCost } from '../src/sim/model-cost.ts';
import { PAPER_DEVICE, PAPER_MODEL, PAPER_OPTIMISED_OPTIONS, PAPER_SEQ, paperLayout } from '../src/sim/paper.ts';
import { getSpec } from '../src/device/specs.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({ options: { steps: { type: 'string' }, quick: { type: 'boolean' } } });
const quick = !!values.quick;
const STEPS = Number(values.steps ?? (quick ? 100 : 400));
const LAYERS = 4, N = 256, D = 32, NODES = 4, REDUNDANT = 32;
const EXPONENTS = [0.5, 1.0, 1.5];
const DRIFT = 2, DRIFT_REACH = 16, PERIOD = 50, EMA = 0.9, THRESHOLD = 0.08;
const SAMPLE_EVERY = quick ? 50 : 40;

interface Variant { label: string; solver: SolverName; spec: PlacementSpec; migrationSlack?: number }
function variants(n: number, d: number, nodes: number, groups: number, redundant: number): Variant[] {
  const base = { numExperts: n, numDevices: d, numNodes: nodes, numGroups: groups };
  const mode = groups % nodes === 0 && nodes > 1 ? 'hier' : 'global';
  return [
    { label: 'static', solver: 'static', spec: { ...base, numReplicas: n } },
    { label: `greedy (${mode})`, solver: 'greedy', spec: { ...base, numReplicas: n } },
    { label: `eplb R=${n + redundant} (${mode})`, solver: 'eplb', spec: { ...base, numReplicas: n + redundant } },
    { label: `ours R=${n + redundant} (${mode})`, solver: 'ours', spec: { ...base, numReplicas: n + redundant } },
    { label: `ours R=${n + redundant} migr 0.5%`, solver: 'ours', spec: { ...base, numReplicas: n + redundant }, migrationSlack: 0.005 },
  ];
}

const pad = (s: string | number, w: number) => String(s).padStart(w);
const row = (cells: (string | number)[], widths: number[], left = 1) => cells.map((c, i) => (i < left ? String(c).padEnd(widths[i]) : pad(c, widths[i]))).join(' ');

// ---- A. snapshot quality ----
const snapshot: Record<string, unknown>[] = [];
const traces = new Map<number, ExpertLoadTrace>();
for (const s of EXPONENTS) {
  traces.set(s, syntheticZipfTrace({ numLayers: LAYERS, numExperts: N, steps: STEPS, exponent: s, drift: DRIFT, driftReach: DRIFT_REACH, seed: 11 }));
}
for (const s of EXPONENTS) {
  const trace = traces.get(s)!;
  let staticTime = 0; // static contiguous does not depend on groups; computed in the groups = 1 pass
  for (const groups of [1, 8]) {
    for (const v of variants(N, D, NODES, groups, REDUNDANT)) {
      if ((groups === 8 && v.solver === 'static') || v.migrationSlack !== undefined) continue; // snapshot: no previous plan
      let time = 0, sumMm = 0, worst = 0, n = 0, meanTime = 0;
      const t0 = performance.now();
      for (let st = 0; st < STEPS; st += SAMPLE_EVERY) {
        for (const loads of trace.steps[st]) {
          const b = balance(solveLayer(v.solver, loads, v.spec).deviceLoads);
          time += b.max; meanTime += b.mean; sumMm += b.maxOverMean; worst = Math.max(worst, b.maxOverMean); n++;
        }
      }
      if (v.solver === 'static') staticTime = time;
      snapshot.push({
        exponent: s, placement: v.label, solver: v.solver, spec: v.spec, samples: n,
        meanMaxOverMean: sumMm / n, worstMaxOverMean: worst, relativeMoeTime: time / staticTime,
        perfectBalanceRelativeTime: meanTime / staticTime, msPerLayerSolve: (performance.now() - t0) / n,
      });
    }
  }
}

// ---- B. dynamic placement over the drifting trace ----
interface DynRow {
  trace: string; placement: string; relativeMoeTime: number; gain: number; replacements: number; slotMoves: number; perfectBalanceGain: number;
  /** ρ = Σ max device load / Σ mean device load, and the paper model's simulated MFU at that ρ */
  rho: number; paperMfu: number;
}
const paperMc = modelCost(PAPER_MODEL, PAPER_SEQ, PAPER_OPTIMISED_OPTIONS.causalFlops, PAPER_OPTIMISED_OPTIONS.gatedMlp);
const paperMfu = (rho: number) => simulate(paperMc, paperLayout(6144), { ...PAPER_OPTIMISED_OPTIONS, imbalance: rho }, getSpec(PAPER_DEVICE)).mfu;
function dynamic(trace: ExpertLoadTrace, vs: Variant[]): DynRow[] {
  const out: DynRow[] = [];
  let staticTime = 0, meanTime = 0;
  for (const v of vs) {
    let time = 0, replacements = 0, slotMoves = 0;
    if (v.solver === 'static') {
      for (const step of trace.steps) for (const loads of step) {
        const b = balance(deviceLoads(solveLayer('static', loads, v.spec).physicalToLogical, loads, v.spec.numDevices));
        time += b.max; meanTime += b.mean;
      }
      staticTime = time;
    } else {
      const c = new PlacementController({ spec: v.spec, numLayers: trace.numLayers, solver: v.solver, emaWeight: EMA, period: PERIOD, threshold: THRESHOLD, migrationSlack: v.migrationSlack });
      for (const step of trace.steps) {
        step.forEach((loads, l) => { time += Math.max(...deviceLoads(c.placement[l].physicalToLogical, loads, v.spec.numDevices)); });
        const round = c.observe(step);
        for (const d of round?.layers ?? []) if (d.replace) { replacements++; slotMoves += d.moves.length; }
      }
    }
    out.push({
      trace: trace.name, placement: v.label, relativeMoeTime: time / staticTime, gain: 1 - time / staticTime,
      replacements, slotMoves, perfectBalanceGain: 1 - meanTime / staticTime, rho: time / meanTime, paperMfu: paperMfu(time / meanTime),
    });
  }
  return out;
}

const dyn: DynRow[] = [];
for (const s of EXPONENTS) dyn.push(...dynamic(traces.get(s)!, variants(N, D, NODES, 1, REDUNDANT)));
const traceDir = join(root, 'bench', 'traces');
let recorded: string[] = [];
try { recorded = readdirSync(traceDir).filter((f) => f.endsWith('.json')).sort(); } catch { /* no traces yet */ }
for (const f of recorded) {
  const t = parseTrace(JSON.parse(readFileSync(join(traceDir, f), 'utf8')));
  const n = t.numExperts;
  let d = 1;
  for (let x = 1; x <= Math.min(32, n / 2); x++) if (n % x === 0) d = x;
  dyn.push(...dynamic({ ...t, name: `${f}` }, variants(n, d, 1, 1, d)));
}

// ---- report ----
const config = { steps: STEPS, layers: LAYERS, experts: N, devices: D, nodes: NODES, redundantSlots: REDUNDANT, drift: DRIFT, driftReach: DRIFT_REACH, period: PERIOD, emaWeight: EMA, threshold: THRESHOLD, sampleEvery: SAMPLE_EVERY, seed: 11, tokensPerStep: 4096, topK: 8 };
console.log(`A. snapshot: ${N} experts, ${D} devices, ${NODES} nodes, R = ${N} or ${N + REDUNDANT}; Zipf traces, ${LAYERS} layers, every ${SAMPLE_EVERY}th of ${STEPS} steps`);
const wA = [30, 6, 10, 10, 10, 10, 10];
console.log(row(['placement', 'zipf', 'max/mean', 'worst', 'MoE time', 'bound', 'ms/layer'], wA));
for (const r of snapshot) {
  console.log(row([r.placement as string, r.exponent as number, (r.meanMaxOverMean as number).toFixed(3), (r.worstMaxOverMean as number).toFixed(3),
    (r.relativeMoeTime as number).toFixed(3), (r.perfectBalanceRelativeTime as number).toFixed(3), (r.msPerLayerSolve as number).toFixed(1)], wA));
}
console.log(`\nB. dynamic placement over ${STEPS} drifting steps (EMA ${EMA}, CV gate ${THRESHOLD}, period ${PERIOD}); MoE time relative to static`);
const wB = [28, 22, 10, 8, 8, 8, 10, 7, 10];
console.log(row(['trace', 'placement', 'MoE time', 'gain', 'bound', 'replace', 'slot moves', 'ρ', 'paper MFU'], wB, 2));
for (const r of dyn) {
  console.log(row([r.trace, r.placement, r.relativeMoeTime.toFixed(3), `${(100 * r.gain).toFixed(1)}%`, `${(100 * r.perfectBalanceGain).toFixed(1)}%`, r.replacements, r.slotMoves,
    r.rho.toFixed(3), `${(100 * r.paperMfu).toFixed(2)}%`], wB, 2));
}
console.log(`paper model (optimised setup, 6144 NPUs) simulated MFU at ρ = 1: ${(100 * paperMfu(1)).toFixed(2)}%`);
mkdirSync(join(root, 'bench', 'results'), { recursive: true });
const outPath = join(root, 'bench', 'results', 'placement.json');
writeFileSync(outPath, JSON.stringify({ config, paperMfuAtRho1: paperMfu(1), endToEnd: 'rho = sum max / sum mean device load of each part-B row -> simulate() of the paper optimised setup (src/sim/paper.ts) with imbalance rho', timeModel: 'T_layer proportional to max device load (tokens); relative to static contiguous placement', snapshot, dynamic: dyn }, null, 1));
console.log(`\nwrote ${outPath}`);
