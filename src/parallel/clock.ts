// Orders simulated ops per device: each rank's next op starts after its previous one (compute or
// communication), so the cluster timeline shows the real dependency chain of a parallel step.
// The parallel executors run every rank in lockstep in one process; this is only time accounting.
//
// The executors report one compute charge per module call (`L0 attn fwd`, `experts bwd`, ...). An
// optional `refine` hook (src/sim/executed.ts `executorOpRefiner`) splits each into the kernels the
// replica actually runs, with their own shapes (QKV / output GEMMs, core attention, norm and residual
// bytes, dgrad + wgrad in the backward), each charged with the cost.ts function of its kind and its own
// launch overhead. Without the hook every charge is one op, as reported.
import type { Cluster } from '../device/cluster.ts';
import type { OpCost } from '../device/device.ts';
import type { SimEvent } from '../device/timeline.ts';

/** One kernel of a refined charge. */
export interface RefinedOp { name: string; cost: OpCost }
/** Split a reported compute charge into kernels (null: charge it as reported). */
export type OpRefiner = (rank: number, name: string, cost: OpCost) => RefinedOp[] | null;

export class StepClock {
  private last = new Map<number, SimEvent>();
  /** per-kernel refinement of the executors' compute charges (default: none) */
  refine: OpRefiner | null = null;
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

  /** Record the per-rank events of a collective (events[i] belongs to ranks[i]). */
  comm(ranks: readonly number[], events: readonly SimEvent[]): void {
    ranks.forEach((r, i) => { if (events[i]) this.last.set(r, events[i]); });
  }

  reset(): void { this.last.clear(); }
}
