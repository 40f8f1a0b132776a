// Flat versus hierarchical expert-parallel all-to-all (dispatch) for top-8 routing on 2 and 4 nodes of
// 8 Ascend 910B NPUs (EP = all NPUs, 256 experts, Pangu Ultra MoE hidden 7680, bf16 tokens).
//   npx tsx bench/hierarchical-a2a.ts [--tokens 4096] [--quick]
// Bytes come from the pure planners (src/device/a2a-plan.ts), the same plans the executed
// collectives use (tests/collectives-hierarchical.test.ts checks them against real tensors);
// times from the alpha-beta cost functions (src/device/cost.ts). Writes bench/results/hierarchical-a2a.json.
//
// Routings: 'uniform' = top-8 of 256 experts uniformly at random; 'node-limited-1' = all 8 experts of a
// token on one (random) remote node, the case where hierarchical saves exactly k x inter-node bytes.
// Modes: 'dedup' sends a token once to each remote node that hosts one of its experts; 'allgather'
// sends every token to every node (MindSpeed --moe-hierarchical-alltoallv).
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { flatTraffic, planHierarchicalAllToAll, type HierarchicalMode, type RankDispatch } from '../src/device/a2a-plan.ts';
import { hierarchicalAllToAllTime, twoTierAllToAllTime } from '../src/device/cost.ts';
import { getSpec } from '../src/device/specs.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({ options: { tokens: { type: 'string' }, quick: { type: 'boolean' } } });
const T = Number(values.tokens ?? (values.quick ? 512 : 4096)); // tokens per NPU
const E = 256, K = 8, H = 7680, BYTES = 2, PER_NODE = 8;
const rowBytes = H * BYTES;
const spec = getSpec('ascend-910b');

function rng(seed: number) { let s = seed >>> 0 || 1; return () => { s ^= s << 13; s >>>= 0; s ^= s >> 17; s ^= s << 5; s >>>= 0; return s / 2 ** 32; }; }

/** k distinct values of [lo, lo + span) */
function pick(r: () => number, lo: number, span: number, k: number): number[] {
  const got = new Set<number>();
  while (got.size < k) got.add(lo + Math.floor(r() * span));
  return [...got];
}

function route(nodes: number, routing: 'uniform' | 'node-limited-1', seed: number): RankDispatch[] {
  const n = nodes * PER_NODE, perRank = E / n, perNode = E / nodes, r = rng(seed);
  return Array.from({ length: n }, (_, s) => {
    const rows: Array<[number, number]> = [];
    const myNode = Math.floor(s / PER_NODE);
    for (let t = 0; t < T; t++) {
      const experts = routing === 'uniform' ? pick(r, 0, E, K)
        : pick(r, ((myNode + 1 + Math.floor(r() * (nodes - 1))) % nodes) * perNode, perNode, K);
      for (const e of experts) rows.push([Math.floor(e / perRank), t]);
    }
    rows.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    return { numTokens: T, rowDest: Int32Array.from(rows, (x) => x[0]), rowToken: Int32Array.from(rows, (x) => x[1]) };
  });
}

interface Row {
  nodes: number; npus: number; routing: string; mode: HierarchicalMode;
  flatInterGB: number; hierInterGB: number; interRatio: number;
  flatUs: number; hierUs: number; hierInterUs: number; hierIntraUs: number; speedup: number;
}

const rows: Row[] = [];
for (const nodes of [2, 4]) for (const routing of ['uniform', 'node-limited-1'] as const) {
  const dispatch = route(nodes, routing, 1234 + nodes);
  const n = nodes * PER_NODE, nodeOf = Array.from({ length: n }, (_, i) => Math.floor(i / PER_NODE));
  const splits = dispatch.map((d) => { const c = new Array<number>(n).fill(0); for (let j = 0; j < d.rowDest.length; j++) c[d.rowDest[j]]++; return c; });
  const flat = flatTraffic(nodeOf, splits.map((row) => row.map((c) => c * rowBytes)));
  const flatTime = twoTierAllToAllTime(flat, spec.intraNode, spec.interNode);
  for (const mode of ['dedup', 'allgather'] as const) {
    const p = planHierarchicalAllToAll(nodeOf, dispatch, mode);
    const t = hierarchicalAllToAllTime(p.phase1MaxRows * rowBytes, p.phase2MaxRows * rowBytes, nodes, PER_NODE, spec.intraNode, spec.interNode);
    const hierInter = p.phase1TotalRows * rowBytes;
    rows.push({
      nodes, npus: n, routing, mode,
      flatInterGB: flat.totalInterBytes / 1e9, hierInterGB: hierInter / 1e9, interRatio: hierInter / flat.totalInterBytes,
      flatUs: flatTime * 1e6, hierUs: t.total * 1e6, hierInterUs: t.interNode * 1e6, hierIntraUs: t.intraNode * 1e6, speedup: flatTime / t.total,
    });
  }
}

const fmt = (x: number, d = 3) => x.toFixed(d);
console.log(`dispatch all-to-all, ${T} tokens/NPU, top-${K} of ${E} experts, hidden ${H} bf16, ${spec.name} (RoCE ${spec.interNode.bandwidth / 1e9} GB/s, HCCS ${spec.intraNode.bandwidth / 1e9} GB/s)\n`);
console.log('nodes npus routing         mode       flat inter GB  hier inter GB  ratio   flat ms  hier ms (inter+intra)   speedup');
for (const r of rows)
  console.log(`${String(r.nodes).padEnd(5)} ${String(r.npus).padEnd(4)} ${r.routing.padEnd(15)} ${r.mode.padEnd(10)} ${fmt(r.flatInterGB).padStart(13)}  ${fmt(r.hierInterGB).padStart(13)}  ${fmt(r.interRatio)}  ${fmt(r.flatUs / 1e3, 2).padStart(7)}  ${fmt(r.hierUs / 1e3, 2).padStart(7)} (${fmt(r.hierInterUs / 1e3, 2)}+${fmt(r.hierIntraUs / 1e3, 2)})  ${fmt(r.speedup, 2)}x`);

const out = join(root, 'bench', 'results', 'hierarchical-a2a.json');
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify({ bench: 'hierarchical-a2a', spec: spec.name, tokensPerNpu: T, experts: E, topK: K, hidden: H, bytesPerElement: BYTES, devicesPerNode: PER_NODE, rows }, null, 2) + '\n');
console.log(`\nwrote ${out}`);
