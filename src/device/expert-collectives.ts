// Expert-parallel collectives over simulated devices: the MoE dispatch (flat and the paper's
// hierarchical all-to-all) and combine (the reverse, with the per-token weighted sum). The plans are
// pure data from a2a-plan.ts; this file only executes them on tensors and charges their time.
//
// A dispatch (RankDispatch per rank) lists the permuted rows a rank sends: row j copies token
// rowToken[j] to group rank rowDest[j], sorted by destination (Megatron's expert-major permute).
// Rank d receives the rows addressed to it in source order: that is `expertRows[d]` of the combine.
import { tf } from '../backend/tf.ts';
import { dispatchSplits, planHierarchicalAllToAll, type HierarchicalMode, type HierarchicalPlan, type RankDispatch } from './a2a-plan.ts';
import { Collectives, type CollectiveOptions, type CollectiveResult } from './collectives.ts';
import { hierarchicalAllToAllTime } from './cost.ts';
import type { ProcessGroup } from './groups.ts';

export class ExpertCollectives extends Collectives {
  /** Flat dispatch: permute each rank's tokens into rows (dispatch.rowToken) and all-to-all-v them. */
  dispatchAllToAll(group: ProcessGroup, tokens: readonly tf.Tensor[], dispatch: readonly RankDispatch[], opts: CollectiveOptions = {}): CollectiveResult {
    const n = group.ranks.length;
    if (tokens.length !== n || dispatch.length !== n) throw new Error(`dispatchAllToAll over ${group.kind} group: need ${n} token tensors and dispatches, got ${tokens.length} and ${dispatch.length}`);
    const rows = tf.tidy(() => tokens.map((t, s) => tf.gather(t, tf.tensor1d(Array.from(dispatch[s].rowToken), 'int32'))));
    try {
      const splits = dispatchSplits(n, dispatch);
      return this.allToAllV(group, rows, splits, { ...opts, label: opts.label ?? 'dispatch' });
    } finally {
      tf.dispose(rows);
    }
  }

  /**
   * The paper's hierarchical all-to-all (a2a-plan.ts): same outputs as dispatchAllToAll, but phase 1
   * sends each token once per needed remote node to the same-local-rank peer (inter-node link, stream
   * 'comm-inter'), then phase 2 is an intra-node all-to-all-v (stream 'comm-intra').
   */
  hierarchicalAllToAll(group: ProcessGroup, tokens: readonly tf.Tensor[], dispatch: readonly RankDispatch[],
    opts: CollectiveOptions & { mode?: HierarchicalMode } = {}): CollectiveResult & { plan: HierarchicalPlan; phase1Seconds: number; phase2Seconds: number } {
    this.check('hierarchicalAllToAll', group, tokens, false);
    const n = group.ranks.length, label = opts.label ?? 'dispatch';
    const nodeOf = group.ranks.map((r) => this.dev(r).node);
    tokens.forEach((t, s) => { if (t.rank !== 2 || t.shape[0] !== dispatch[s]?.numTokens) throw new Error(`hierarchicalAllToAll: tokens ${s} must be [numTokens=${dispatch[s]?.numTokens}, h], got [${t.shape}]`); });
    const plan = planHierarchicalAllToAll(nodeOf, dispatch, opts.mode);
    const rowBytes = this.dev(group.ranks[0]).bytesOf(tokens[0]) / Math.max(1, tokens[0].shape[0]);
    const spec = this.ctx.spec;
    const t = hierarchicalAllToAllTime(plan.phase1MaxRows * rowBytes, plan.phase2MaxRows * rowBytes, plan.nodes.length, plan.ranksPerNode, spec.intraNode, spec.interNode);
    const N = plan.nodes.length;

    // Ledger: phase 1 (inter-node, one message per source and remote node), phase 2 (intra-node).
    for (let s = 0; s < n; s++) for (let m = 0; m < N; m++)
      this.record('hierarchicalAllToAll.phase1', group, group.ranks[s], group.ranks[plan.holder[s][m]], plan.sent[s][m].length * rowBytes, label);
    for (let d = 0; d < n; d++) for (let s = 0; s < n; s++)
      this.record('hierarchicalAllToAll.phase2', group, group.ranks[plan.holder[s][plan.nodeIndex[d]]], group.ranks[d], plan.gatherIdx[d][s].length * rowBytes, label);
    this.buffers(group, group.ranks.map((_, i) => {
      let recv = 0;
      for (let s = 0; s < n; s++) { recv += plan.gatherIdx[i][s].length; for (let m = 0; m < N; m++) if (plan.holder[s][m] === i && s !== i) recv += plan.sent[s][m].length; }
      return recv * rowBytes;
    }), label);

    const outputs = tf.tidy(() => {
      // phase 1: buffers[s][m] = tokens of s available on node m
      const buffers = tokens.map((tok, s) => plan.sent[s].map((toks, m) => (m === plan.nodeIndex[s] ? tok : tf.gather(tok, tf.tensor1d(toks, 'int32')))));
      // phase 2: each destination gathers its rows from the buffers on its node, in source order
      return group.ranks.map((_, d) => {
        const parts = plan.gatherIdx[d].map((idx, s) => (idx.length ? tf.gather(buffers[s][plan.nodeIndex[d]], tf.tensor1d(idx, 'int32')) : null)).filter((p): p is tf.Tensor => p !== null);
        return parts.length === 0 ? tf.zeros([0, tokens[0].shape[1] as number], tokens[0].dtype) : parts.length === 1 ? parts[0] : tf.concat(parts, 0);
      });
    });

    const ev1 = N > 1 ? this.emit(group, 'comm-inter', `hierA2A.phase1 ${label}`, t.interNode, opts.after, { rows: plan.phase1TotalRows }) : [];
    const ev2 = this.emit(group, 'comm-intra', `hierA2A.phase2 ${label}`, t.intraNode, [...(opts.after ?? []), ...ev1], { rows: plan.phase2TotalRows });
    return this.place(group, opts, { outputs, events: ev2, seconds: t.total, plan, phase1Seconds: t.interNode, phase2Seconds: t.intraNode });
  }

  // --- expert-parallel combine (the reverse direction) ------------------------------------------------

  /** Weighted sum of rows into tokens: out[t] = sum over rows j with rowToken[j] = t of w[j]·rows[j]. [T, h] */
  protected unpermute(rows: tf.Tensor, rowToken: ArrayLike<number>, weights: ArrayLike<number> | undefined, numTokens: number): tf.Tensor {
    return tf.tidy(() => {
      const h = rows.shape[1] as number;
      if (rows.shape[0] === 0) return tf.zeros([numTokens, h], rows.dtype);
      const w = weights ? tf.mul(rows, tf.tensor2d(Float32Array.from(weights), [rows.shape[0], 1])) : rows;
      return tf.scatterND(tf.tensor2d(Int32Array.from(rowToken), [rows.shape[0], 1], 'int32'), w, [numTokens, h]);
    });
  }

  protected checkCombine(op: string, group: ProcessGroup, expertRows: readonly tf.Tensor[], dispatch: readonly RankDispatch[], rowWeights?: readonly ArrayLike<number>[]): void {
    this.check(op, group, expertRows, false);
    const n = group.ranks.length, problems: string[] = [];
    if (dispatch.length !== n) problems.push(`${dispatch.length} dispatches for ${n} ranks`);
    const splits = dispatchSplits(n, dispatch);
    expertRows.forEach((t, d) => {
      const want = splits.reduce((a, row) => a + (row[d] ?? 0), 0);
      if (t.rank !== 2 || t.shape[0] !== want) problems.push(`expertRows ${d} must be [${want}, h] (the rows it received), got [${t.shape}]`);
    });
    rowWeights?.forEach((w, s) => { if (w.length !== dispatch[s]?.rowDest.length) problems.push(`rowWeights ${s} has ${w.length} entries, rank ${s} dispatched ${dispatch[s]?.rowDest.length} rows`); });
    if (problems.length) throw new Error(`${op} over ${group.kind} group: ${problems.join('; ')}`);
  }

  /**
   * Flat combine: send expert outputs back (the reverse all-to-all-v, splits transposed) and sum each
   * token's rows weighted by `rowWeights` (e.g. the router probs, in each source's row order).
   * `expertRows[d]` are the rows rank d received from the dispatch, in the same order. Returns [T_s, h] per rank.
   */
  combineAllToAll(group: ProcessGroup, expertRows: readonly tf.Tensor[], dispatch: readonly RankDispatch[],
    opts: CollectiveOptions & { rowWeights?: readonly ArrayLike<number>[] } = {}): CollectiveResult {
    this.checkCombine('combineAllToAll', group, expertRows, dispatch, opts.rowWeights);
    const n = group.ranks.length;
    const splits = dispatchSplits(n, dispatch);
    const back = this.allToAllV(group, expertRows, splits[0].map((_, d) => splits.map((row) => row[d])), { ...opts, holdAs: undefined, label: opts.label ?? 'combine' });
    const outputs = back.outputs.map((rows, s) => this.unpermute(rows, dispatch[s].rowToken, opts.rowWeights?.[s], dispatch[s].numTokens));
    tf.dispose(back.outputs);
    return this.place(group, opts, { outputs, events: back.events, seconds: back.seconds });
  }

  /**
   * Hierarchical combine, the reverse of hierarchicalAllToAll: phase 2 sends expert outputs back inside
   * the node to the token's holder, which sums them per token (weighted); phase 1 sends one partial sum
   * per (token, remote node) back across nodes, and the source adds them up. Same result as
   * combineAllToAll up to float summation order; inter-node bytes equal the dispatch's phase 1.
   */
  hierarchicalCombine(group: ProcessGroup, expertRows: readonly tf.Tensor[], dispatch: readonly RankDispatch[],
    opts: CollectiveOptions & { rowWeights?: readonly ArrayLike<number>[]; mode?: HierarchicalMode; plan?: HierarchicalPlan } = {}): CollectiveResult & { plan: HierarchicalPlan } {
    this.checkCombine('hierarchicalCombine', group, expertRows, dispatch, opts.rowWeights);
    const n = group.ranks.length, label = opts.label ?? 'combine';
    const plan = opts.plan ?? planHierarchicalAllToAll(group.ranks.map((r) => this.dev(r).node), dispatch, opts.mode);
    const N = plan.nodes.length, h = expertRows[0].shape[1] as number;
    const rowBytes = expertRows[0].shape[0] > 0 ? this.dev(group.ranks[0]).bytesOf(expertRows[0]) / expertRows[0].shape[0] : 0;
    const spec = this.ctx.spec;
    const t = hierarchicalAllToAllTime(plan.phase1MaxRows * rowBytes, plan.phase2MaxRows * rowBytes, N, plan.ranksPerNode, spec.intraNode, spec.interNode);

    for (let d = 0; d < n; d++) for (let s = 0; s < n; s++)
      this.record('hierarchicalCombine.phase2', group, group.ranks[d], group.ranks[plan.holder[s][plan.nodeIndex[d]]], plan.gatherIdx[d][s].length * rowBytes, label);
    for (let s = 0; s < n; s++) for (let m = 0; m < N; m++)
      this.record('hierarchicalCombine.phase1', group, group.ranks[plan.holder[s][m]], group.ranks[s], plan.sent[s][m].length * rowBytes, label);

    // offsets of s's rows for each destination (rows are sorted by destination)
    const offsets = plan.splits.map((row) => { let o = 0; return row.map((c) => { const x = o; o += c; return x; }); });
    const outputs = tf.tidy(() => {
      const segments = expertRows.map((rows, d) => (n === 1 ? [rows] : tf.split(rows, plan.splits.map((row) => row[d]), 0)));
      return dispatch.map((disp, s) => {
        let out: tf.Tensor | null = null;
        for (let m = 0; m < N; m++) {
          // phase 2 reverse: rows of s processed on node m, summed per buffer token at the holder
          const parts: tf.Tensor[] = [], idx: number[] = [];
          for (let d = 0; d < n; d++) {
            if (plan.nodeIndex[d] !== m || plan.gatherIdx[d][s].length === 0) continue;
            const seg = segments[d][s], w = opts.rowWeights?.[s];
            parts.push(w ? tf.mul(seg, tf.tensor2d(Float32Array.from({ length: seg.shape[0] }, (_, i) => w[offsets[s][d] + i]), [seg.shape[0], 1])) : seg);
            idx.push(...plan.gatherIdx[d][s]);
          }
          if (parts.length === 0) continue;
          const own = m === plan.nodeIndex[s], bufLen = own ? disp.numTokens : plan.sent[s][m].length;
          const partial = tf.scatterND(tf.tensor2d(Int32Array.from(idx), [idx.length, 1], 'int32'), parts.length === 1 ? parts[0] : tf.concat(parts, 0), [bufLen, h]);
          // phase 1 reverse: the partial sums cross back to the source, which adds them into its tokens
          const back = own ? partial : tf.scatterND(tf.tensor2d(Int32Array.from(plan.sent[s][m]), [bufLen, 1], 'int32'), partial, [disp.numTokens, h]);
          out = out ? tf.add(out, back) : back;
        }
        return out ?? tf.zeros([disp.numTokens, h], expertRows[0].dtype);
      });
    });

    const ev2 = this.emit(group, 'comm-intra', `hierCombine.phase2 ${label}`, t.intraNode, opts.after, { rows: plan.phase2TotalRows });
    const ev1 = N > 1 ? this.emit(group, 'comm-inter', `hierCombine.phase1 ${label}`, t.interNode, [...(opts.after ?? []), ...ev2], { rows: plan.phase1TotalRows }) : ev2;
    return this.place(group, opts, { outputs, events: ev1, seconds: t.total, plan });
  }
}
