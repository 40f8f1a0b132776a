// Orders simulated ops per device: each rank's next op starts after its previous one (compute or
// communication), so the cluster timeline shows the real dependency chain of a parallel step.
// The parallel executors run every rank in lockstep in one process; this is only time accounting.
import type { Cluster } from '../device/cluster.ts';
import type { OpCost } from '../device/device.ts';
import type { SimEvent } from '../device/timeline.ts';

export class StepClock {
  private last = new Map<number, SimEvent>();
  constructor(readonly cluster: Cluster) {}

  /** Events a collective over `ranks` must wait for. */
  after(ranks: readonly number[]): SimEvent[] {
    return ranks.flatMap((r) => { const e = this.last.get(r); return e ? [e] : []; });
  }

  /** Charge a compute op on `rank` after its previous op. */
  compute(rank: number, name: string, cost: OpCost): void {
    this.last.set(rank, this.cluster.device(rank).charge(name, cost, { after: this.after([rank]) }));
  }

  /** Record the per-rank events of a collective (events[i] belongs to ranks[i]). */
  comm(ranks: readonly number[], events: readonly SimEvent[]): void {
    ranks.forEach((r, i) => { if (events[i]) this.last.set(r, events[i]); });
  }

  reset(): void { this.last.clear(); }
}
