// Parameter counts of the presets, total and activated per token, by component, and the model
// FLOPs per token (Megatron convention) at a few sequence lengths.
// Run: npx tsx examples/preset-params.ts
import { PRESETS } from '../src/model/config.ts';
import { countParams } from '../src/model/params-count.ts';
import { modelFlopsPerTokenBreakdown } from '../src/model/flops-local.ts';

const fmt = (n: number) => (n >= 1e9 ? `${(n / 1e9).toFixed(2)}B` : n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}K` : `${n}`);

for (const [name, cfg] of Object.entries(PRESETS)) {
  const c = countParams(cfg);
  const nMoE = cfg.numLayers - cfg.numDenseLayers;
  console.log(`\n${name}: hidden ${cfg.hiddenSize}, ${cfg.numLayers} layers (${cfg.numDenseLayers} dense), ${cfg.attention.toUpperCase()} ${cfg.numHeads} heads, ` +
    `${cfg.moe.numExperts} experts top-${cfg.moe.topk} + ${cfg.moe.numSharedExperts} shared, vocab ${cfg.vocabSize}, MTP ${cfg.numMtpLayers}`);
  console.log(`  total ${fmt(c.total)} (with MTP ${fmt(c.totalWithMtp)}), activated per token ${fmt(c.activated)}`);
  const rows: [string, number][] = [
    ['embedding', c.embedding],
    ['output layer', c.outputLayer],
    [`attention (${cfg.numLayers} × ${fmt(c.attentionPerLayer)})`, c.attentionPerLayer * cfg.numLayers],
    [`dense MLP (${cfg.numDenseLayers} × ${fmt(c.denseMlpPerLayer)})`, c.denseMlpPerLayer * cfg.numDenseLayers],
    [`routed experts (${nMoE} × ${cfg.moe.numExperts} × ${fmt(c.expertPerExpert)})`, c.expertPerExpert * cfg.moe.numExperts * nMoE],
    [`shared experts (${nMoE} × ${fmt(c.sharedExpertPerLayer)})`, c.sharedExpertPerLayer * nMoE],
    [`routers (${nMoE} × ${fmt(c.routerPerLayer)})`, c.routerPerLayer * nMoE],
    [`norms (${cfg.numLayers} × ${fmt(c.normsPerLayer)} + final)`, c.normsPerLayer * cfg.numLayers + cfg.hiddenSize],
    ['MTP modules (not in total)', c.mtp],
  ];
  for (const [k, v] of rows) console.log(`    ${k.padEnd(44)} ${fmt(v).padStart(9)}  ${((100 * v) / c.total).toFixed(2).padStart(6)}%`);
  const seqs = [128, 4096].filter((s) => s <= cfg.maxSeqLen);
  console.log('  model FLOPs per token (fwd+bwd): ' + seqs.map((s) => {
    const f = modelFlopsPerTokenBreakdown(cfg, s);
    return `s=${s}: ${fmt(f.total)} (core attention ${((100 * f.core) / f.total).toFixed(1)}%)`;
  }).join(', '));
}
