// Pure planners for expert-parallel all-to-all over a group that spans nodes: the flat all-to-all(v)
// traffic, and the paper's hierarchical all-to-all (pangu-ultra-moe.md §6.1, MindSpeed
// --moe-hierarchical-alltoallv): phase 1 moves each token once from its rank to the same-local-rank
// peer on every remote node that needs it (inter-node link), phase 2 is an intra-node all-to-allv from
// that peer to the ranks owning the token's experts. A token whose k experts sit on one remote node
// crosses the inter-node link once instead of k times. Plans are plain data (indices and counts).
import type { TwoTierTraffic } from './cost.ts';

/**
 * The dispatch of one source rank: `numTokens` tokens and the permuted rows it sends (Megatron's
 * expert-major permutation): row j is a copy of token `rowToken[j]` going to group rank `rowDest[j]`.
 * Rows must be sorted by destination, so the flat inputSplits are the per-destination row counts.
 */
export interface RankDispatch { numTokens: number; rowToken: ArrayLike<number>; rowDest: ArrayLike<number> }

/** 'dedup': a token goes to a remote node only if one of its experts is there; 'allgather': every token goes to every node (MindSpeed). */
export type HierarchicalMode = 'dedup' | 'allgather';

export interface HierarchicalPlan {
  mode: HierarchicalMode;
  /** distinct node ids in group order of first appearance */
  nodes: number[];
  ranksPerNode: number;
  /** nodeIndex[i] = index into `nodes` of group rank i; localIndex[i] = its position among its node's group ranks */
  nodeIndex: number[];
  localIndex: number[];
  /** sent[s][m]: sorted token indices of rank s sent to node m in phase 1 (empty for s's own node) */
  sent: number[][][];
  /** holder[s][m]: group rank holding rank s's token buffer on node m (s itself on its own node) */
  holder: number[][];
  /** gatherIdx[d][s]: rows for d from s, as indices into s's buffer on d's node (row order preserved) */
  gatherIdx: number[][][];
  /** rows per (src, dst) = the flat inputSplits */
  splits: number[][];
  /** phase 1 / phase 2 rows per busiest rank (max over ranks of max(sent, received), self excluded) */
  phase1MaxRows: number;
  phase2MaxRows: number;
  /** total rows crossing the inter-node link in phase 1, and intra-node in phase 2 */
  phase1TotalRows: number;
  phase2TotalRows: number;
}

/** Check inputs; one error listing every problem. */
function validate(nodeOf: readonly number[], dispatch: readonly RankDispatch[]): void {
  const n = nodeOf.length, problems: string[] = [];
  if (dispatch.length !== n) problems.push(`dispatch has ${dispatch.length} ranks, group has ${n}`);
  dispatch.forEach((r, s) => {
    if (r.rowToken.length !== r.rowDest.length) problems.push(`rank ${s}: rowToken has ${r.rowToken.length} rows, rowDest ${r.rowDest.length}`);
    for (let j = 0; j < r.rowDest.length; j++) {
      const d = r.rowDest[j], t = r.rowToken[j];
      if (!(Number.isInteger(d) && d >= 0 && d < n)) { problems.push(`rank ${s} row ${j}: destination ${d} outside [0, ${n})`); break; }
      if (!(Number.isInteger(t) && t >= 0 && t < r.numTokens)) { problems.push(`rank ${s} row ${j}: token ${t} outside [0, ${r.numTokens})`); break; }
      if (j > 0 && d < r.rowDest[j - 1]) { problems.push(`rank ${s}: rows must be sorted by destination (row ${j})`); break; }
    }
  });
  if (problems.length) throw new Error(`invalid all-to-all dispatch, ${problems.length} problem(s):\n  - ${problems.join('\n  - ')}`);
}

/** Rows per (src, dst) of a dispatch. */
export function dispatchSplits(n: number, dispatch: readonly RankDispatch[]): number[][] {
  return dispatch.map((r) => {
    const c = new Array<number>(n).fill(0);
    for (let j = 0; j < r.rowDest.length; j++) c[r.rowDest[j]]++;
    return c;
  });
}

/** Per-rank traffic of a flat all-to-all(v) with `splits[s][d]` elements-or-bytes, split by link type. */
export function flatTraffic(nodeOf: readonly number[], splits: readonly (readonly number[])[]): TwoTierTraffic & { totalIntraBytes: number; totalInterBytes: number } {
  const n = nodeOf.length;
  const sendIntra = new Array(n).fill(0), sendInter = new Array(n).fill(0), recvIntra = new Array(n).fill(0), recvInter = new Array(n).fill(0);
  for (let s = 0; s < n; s++) for (let d = 0; d < n; d++) {
    if (s === d) continue;
    const b = splits[s][d];
    if (nodeOf[s] === nodeOf[d]) { sendIntra[s] += b; recvIntra[d] += b; } else { sendInter[s] += b; recvInter[d] += b; }
  }
  const perNode = new Map<number, number>();
  for (const m of nodeOf) perNode.set(m, (perNode.get(m) ?? 0) + 1);
  const max = (a: number[], b: number[]) => a.reduce((m, x, i) => Math.max(m, x, b[i]), 0);
  return {
    maxIntraBytes: max(sendIntra, recvIntra), maxInterBytes: max(sendInter, recvInter),
    ranksPerNode: Math.max(...perNode.values()), nodes: perNode.size,
    totalIntraBytes: sendIntra.reduce((a, b) => a + b, 0), totalInterBytes: sendInter.reduce((a, b) => a + b, 0),
  };
}

/** Plan the hierarchical all-to-all of `dispatch` over a group whose rank i sits on node `nodeOf[i]`. */
export function planHierarchicalAllToAll(nodeOf: readonly number[], dispatch: readonly RankDispatch[], mode: HierarchicalMode = 'dedup'): HierarchicalPlan {
  validate(nodeOf, dispatch);
  const n = nodeOf.length;
  const nodes = [...new Set(nodeOf)];
  const members = nodes.map((m) => nodeOf.map((x, i) => (x === m ? i : -1)).filter((i) => i >= 0));
  const ranksPerNode = members[0].length;
  if (members.some((g) => g.length !== ranksPerNode))
    throw new Error(`hierarchical all-to-all needs the same number of group ranks on every node; got ${members.map((g, i) => `node ${nodes[i]}: ${g.length}`).join(', ')}`);
  const nodeIndex = nodeOf.map((m) => nodes.indexOf(m));
  const localIndex = nodeOf.map((_, i) => members[nodeIndex[i]].indexOf(i));
  const N = nodes.length;

  // Phase 1: which tokens of s go to each remote node, and who holds them there.
  const sent: number[][][] = [], holder: number[][] = [];
  const bufferPos: Array<Array<Map<number, number> | null>> = []; // token -> row in s's buffer on node m
  for (let s = 0; s < n; s++) {
    const r = dispatch[s];
    sent.push([]); holder.push([]); bufferPos.push([]);
    for (let m = 0; m < N; m++) {
      if (m === nodeIndex[s]) { sent[s].push([]); holder[s].push(s); bufferPos[s].push(null); continue; }
      let toks: number[];
      if (mode === 'allgather') toks = Array.from({ length: r.numTokens }, (_, t) => t);
      else {
        const need = new Set<number>();
        for (let j = 0; j < r.rowDest.length; j++) if (nodeIndex[r.rowDest[j]] === m) need.add(r.rowToken[j]);
        toks = [...need].sort((a, b) => a - b);
      }
      sent[s].push(toks);
      holder[s].push(members[m][localIndex[s]]);
      bufferPos[s].push(new Map(toks.map((t, i) => [t, i])));
    }
  }

  // Phase 2: each destination gathers its rows from every source's buffer on its own node.
  const gatherIdx: number[][][] = Array.from({ length: n }, () => Array.from({ length: n }, () => [] as number[]));
  for (let s = 0; s < n; s++) {
    const r = dispatch[s];
    for (let j = 0; j < r.rowDest.length; j++) {
      const d = r.rowDest[j], m = nodeIndex[d], pos = bufferPos[s][m];
      gatherIdx[d][s].push(pos ? pos.get(r.rowToken[j])! : r.rowToken[j]);
    }
  }

  // Traffic per rank (self excluded).
  const p1Send = new Array(n).fill(0), p1Recv = new Array(n).fill(0), p2Send = new Array(n).fill(0), p2Recv = new Array(n).fill(0);
  for (let s = 0; s < n; s++) for (let m = 0; m < N; m++) { p1Send[s] += sent[s][m].length; p1Recv[holder[s][m]] += sent[s][m].length; }
  for (let d = 0; d < n; d++) for (let s = 0; s < n; s++) {
    const h = holder[s][nodeIndex[d]];
    if (h !== d) { p2Send[h] += gatherIdx[d][s].length; p2Recv[d] += gatherIdx[d][s].length; }
  }
  const max = (a: number[], b: number[]) => a.reduce((mx, x, i) => Math.max(mx, x, b[i]), 0);
  return {
    mode, nodes, ranksPerNode, nodeIndex, localIndex, sent, holder, gatherIdx,
    splits: dispatchSplits(n, dispatch),
    phase1MaxRows: max(p1Send, p1Recv), phase2MaxRows: max(p2Send, p2Recv),
    phase1TotalRows: p1Send.reduce((a, b) => a + b, 0), phase2TotalRows: p2Send.reduce((a, b) => a + b, 0),
  };
}
