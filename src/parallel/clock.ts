// Orders simulated ops per device: each rank's next op starts after its previous one (compute or
// communication), so the cluster timeline shows the real dependency chain of a parallel step.
// The parallel executors run every rank in lockstep in one process; this is only time accounting.
//
// The executors report one compute charge per module call (`L0 attn fwd`, `experts bwd`, ...). An
// optional `refine` hook (src/sim/executed.ts `executorOpRefiner`) splits each into the kernels the
// replica actually runs, with their own shapes (QKV / output GEMMs, core attention, norm and residual
// bytes, dgrad + wgrad in the backward), each charged with the cost.ts function of its kind and its own
// launch overhead. Without the hook every charge is one op, as reported.
//
// Backward split (B/W, `splitBackward`): a layer's backward charge (`backward()`) becomes two ops,
// dX (input gradient, on the chain: the next op depends on it) and dW (weight gradient: depends on the
// same inputs, nothing of the micro-batch depends on it). Rule: for a linear layer Y = X·W the backward
// is dX = dY·Wᵀ and dW = Xᵀ·dY, each the forward GEMM's FLOPs, so dX and dW each carry half of the
// backward FLOPs and half of the unsplit op's simulated time (its efficiency and its one launch), so
// the total compute per device is unchanged by the split. With the refiner the kernels already come as
// `… dgrad` / `… wgrad` pairs: the wgrad kernels are dW, the others dX. This clock keeps both on the
// per-rank chain (dX then dW: the same sequential timeline as one op); pp/pipe-clock.ts in overlap mode
// takes dW off the chain so the list scheduler (pp/gap-fill.ts) can put it into gaps.
import type { Cluster } from '../device/cluster.ts';
import type { OpCost } from '../device/device.ts';
import type { SimEvent } from '../device/timeline.ts';

/** One kernel of a refined charge. */
export interface RefinedOp { name: string; cost: OpCost }
/** Split a reported compute charge into kernels (null: charge it as reported). */
export type OpRefiner = (rank: number, name: string, cost: OpCost) => RefinedOp[] | null;

/** One op of a split backward: `part` dX (input gradient) or dW (weight gradient); `flops` its share. */
export interface SplitOp extends RefinedOp { part: 'dX' | 'dW'; flops: number }

/** FLOPs of a charge (a `seconds` or `bytes` charge has none). */
export function costFlops(cost: OpCost): number {
  if ('gemm' in cost) return 2 * cost.gemm[0] * cost.gemm[1] * cost.gemm[2];
  return 'flops' in cost ? cost.flops : 0;
}

/**
 * A backward charge as dX and dW ops (see the header): refined kernels by their `wgrad` suffix, else two
 * ops of half the FLOPs and half the simulated time `seconds` of the unsplit op each.
 */
export function splitBackwardOps(name: string, cost: OpCost, seconds: number, refined: RefinedOp[] | null): SplitOp[] {
  if (refined) return refined.map((o) => ({ ...o, part: /wgrad$/.test(o.name) ? 'dW' as const : 'dX' as const, flops: costFlops(o.cost) }));
  const half = seconds / 2, f = costFlops(cost) / 2;
  return [{ name: `${name} dX`, cost: { seconds: half }, part: 'dX', flops: f }, { name: `${name} dW`, cost: { seconds: seconds - half }, part: 'dW', flops: f }];
}

export class StepClock {
  private last = new Map<number, SimEvent>();
  /** per-kernel refinement of the executors' compute charges (default: none) */
  refine: OpRefiner | null = null;
  /** charge `backward()` as dX + dW ops (default: one op, as reported) */
  splitBackward = false;
  constructor(readonly cluster: Cluster) {}

  /** Events a collective over `ranks` must wait for. */
  after(ranks: readonly number[]): SimEvent[] {
    return ranks.flatMap((r) => { const e = this.last.get(r); return e ? [e] : []; });
  }

  /** Charge a compute op on `rank` after its previous op (refined into kernels when `refine` is set). */
  compute(rank: number, name: string, cost: OpCost): void {
    const ops = this.refine?.(rank, name, cost) ?? [{ name, cost }];
    for (const op of ops) this.last.set(rank, this.cluster.device(rank).charge(op.name, op.cost, { after: this.after([rank]) }));
  }

  /** Charge a layer's backward (input and weight gradients) on `rank`: one op, or dX then dW with `splitBackward`. */
  backward(rank: number, name: string, cost: OpCost): void {
    if (!this.splitBackward) { this.compute(rank, name, cost); return; }
    const dev = this.cluster.device(rank);
    const refined = this.refine?.(rank, name, cost) ?? null;
    const ops = splitBackwardOps(name, cost, refined ? 0 : dev.costOf(cost), refined);
    for (const op of [...ops.filter((o) => o.part === 'dX'), ...ops.filter((o) => o.part === 'dW')])
      this.last.set(rank, dev.charge(op.name, op.cost, { after: this.after([rank]), args: { part: op.part, flops: op.flops } }));
  }

  /** Record the per-rank events of a collective (events[i] belongs to ranks[i]). */
  comm(ranks: readonly number[], events: readonly SimEvent[]): void {
    ranks.forEach((r, i) => { if (events[i]) this.last.set(r, events[i]); });
  }

  reset(): void { this.last.clear(); }
}
