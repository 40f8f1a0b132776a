// Every intermediate of one router call on a small example, with the pure host functions only
// (no tensors): logits → scores → (bias, groups) top-k → probs → capacity/drops → aux/z losses →
// permutation plan → dlogits. Run: npx tsx examples/routing-walkthrough.ts
import {
  topkRouting, applyTokenDropping, getCapacity, auxLossScores, auxRoutingMap, countsPerExpert, switchAuxLoss, seqAuxLoss, zLoss,
  permutePlan, routeTokens, routingBackward, updateExpertBias,
} from '../src/model/routing/index.ts';
import { resolveConfig } from '../src/model/config.ts';

const B = 2, S = 3, T = B * S, E = 8;
const cfg = resolveConfig('tiny', {
  moe: {
    numExperts: E, topk: 2, scoreFunction: 'sigmoid', topkScalingFactor: 2.5, expertBias: true, numGroups: 4, groupTopk: 2,
    capacityFactor: 1.0, dropPolicy: 'probs', padToCapacity: false, auxLoss: [{ type: 'switch', coeff: 1e-2 }, { type: 'seq', coeff: 1e-3 }], zLossCoeff: 1e-3,
  },
});
const moe = cfg.moe;
// deterministic logits [T, E]: token t = b·S + s (batch-major)
const logits = Float32Array.from({ length: T * E }, (_, i) => Math.round(100 * Math.sin(1.3 * i + 0.4)) / 50);
const expertBias = Float32Array.from([0, 0, 0.2, 0, 0, 0, -0.2, 0]);

const fmt = (v: number) => (v === 0 ? '    .' : v.toFixed(3).padStart(6));
function show(title: string, m: ArrayLike<number>, rows: number, cols: number) {
  console.log(`\n${title}`);
  for (let r = 0; r < rows; r++) console.log(`  t${r}: ` + Array.from({ length: cols }, (_, c) => fmt(m[r * cols + c])).join(' '));
}

console.log(`T = B·S = ${B}·${S} = ${T} tokens, E = ${E} experts, k = ${moe.topk}, sigmoid, scaling ${moe.topkScalingFactor}, ` +
  `groups ${moe.numGroups} (keep ${moe.groupTopk}), capacityFactor ${moe.capacityFactor} (${moe.dropPolicy})`);
show('logits [T, E]', logits, T, E);
const r = topkRouting(logits, T, E, moe, expertBias);
show('scores = σ(logits) [T, E]', r.scores, T, E);
console.log(`\nexpertBias [E] = [${[...expertBias].map((v) => v.toFixed(1)).join(', ')}]  (selection only)`);
show('selection scores = scores + bias; groups of 2 ranked by their top-1 (k/g = 1) [T, E]', r.selectionScores, T, E);
console.log('\ntop-k experts per token (largest first, ties → lower index):');
for (let t = 0; t < T; t++) console.log(`  t${t}: [${[...r.topkIdx.slice(t * 2, t * 2 + 2)].join(', ')}]  weights ` +
  `[${[...r.topkWeights.slice(t * 2, t * 2 + 2)].map((v) => v.toFixed(3)).join(', ')}] (σ renormalised over the k)`);
show(`probs = weights · ${moe.topkScalingFactor} [T, E]`, r.probs, T, E);
show('routingMap [T, E]', r.routingMap, T, E);

const capacity = getCapacity(T, E, moe.topk, moe.capacityFactor!);
const d = applyTokenDropping(r.probs, r.routingMap, T, E, moe.topk, moe.capacityFactor!, moe.dropPolicy, moe.padToCapacity);
console.log(`\ncapacity = ceil(T·k/E · cf) = ceil(${T}·${moe.topk}/${E} · ${moe.capacityFactor}) = ${capacity}; ` +
  `dropped (token, expert) pairs: ${d.droppedAssignments}`);
show('final routingMap after dropping [T, E]', d.routingMap, T, E);

const s = auxLossScores(logits, T, E, 'sigmoid');
const m = auxRoutingMap(s, T, E, moe.topk);
show('aux scores = σ/Σσ [T, E]', s, T, E);
console.log(`aux map counts (plain top-k: no bias, no groups, no dropping) = [${[...countsPerExpert(m, T, E)].join(', ')}]`);
console.log(`switch aux = ${switchAuxLoss(s, m, T, E, moe.topk, 1e-2).value.toExponential(4)}, ` +
  `seq aux (S=${S}) = ${seqAuxLoss(s, m, T, E, moe.topk, S, 1e-3).value.toExponential(4)}, z = ${zLoss(logits, T, E, 1e-3).value.toExponential(4)}`);

const p = permutePlan(d.routingMap, d.probs, T, E);
console.log(`\npermutation (expert-major, token-ascending): tokensPerExpert = [${p.tokensPerExpert.join(', ')}]`);
console.log(`  offsets       = [${[...p.offsets].join(', ')}]`);
console.log(`  sortedIndices = [${[...p.sortedIndices].join(', ')}]`);
console.log(`  permutedProbs = [${[...p.permutedProbs].map((v) => v.toFixed(3)).join(', ')}]`);

const plan = routeTokens(logits, T, E, moe, { training: true, expertBias, seqLen: S });
console.log(`\nrouteTokens (the same, in one call): aux losses ${JSON.stringify(plan.auxLosses)}`);
const up = Float32Array.from({ length: plan.permute.numRows }, (_, r) => (r % 2 ? -1 : 1));
const dl = routingBackward(plan, up, 0.5);
show('dlogits for ∂L/∂permutedProbs = ±1 by row, lossScale 1/M = 0.5 (selected scores + aux + z) [T, E]', dl, T, E);
const counts = countsPerExpert(plan.routingMap, T, E);
console.log(`\nexpert bias after one global batch with counts [${[...counts].join(', ')}] (u = ${moe.biasUpdateRate}):`);
console.log(`  [${[...updateExpertBias(expertBias, counts, moe.biasUpdateRate)].map((v) => v.toFixed(3)).join(', ')}]`);
