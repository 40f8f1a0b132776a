// The StepClock of one pipeline stage. Besides each rank's previous op, the stage's next op waits for
// the messages (activations or gradients from the neighbouring stage) its current action consumes.
//
// Overlap mode (adaptive pipe overlap, pp-model.ts `overlap`): the dependency chain is per
// (micro-batch, rank) instead of per rank, i.e. an op of micro-batch m waits only for m's previous op
// on that rank (and its received message), not for ops of the other micro-batch of an F/B pair; the
// ops go through gap-fill.ts, which places a pair's ops with a list scheduler. So while micro-batch
// m's EP all-to-all runs on a comm stream, compute of the paired micro-batch can run on the compute
// stream. The tensors are computed in program order either way.
import type { Cluster } from '../../device/cluster.ts';
import type { OpCost } from '../../device/device.ts';
import type { SimEvent } from '../../device/timeline.ts';
import { StepClock } from '../clock.ts';
import type { GapFiller } from './gap-fill.ts';

export class PipeClock extends StepClock {
  private waits: SimEvent[] = [];
  private mb = 0;
  private chains = new Map<string, SimEvent>();

  /** `filler`: overlap mode (per-micro-batch chains, pairs placed by gap-fill.ts); null: one chain per rank. */
  constructor(cluster: Cluster, readonly filler: GapFiller | null = null) { super(cluster); }

  get overlap(): boolean { return this.filler !== null; }

  /** The micro-batch whose ops come next (overlap mode keys the chains by it). */
  use(microBatch: number): void { this.mb = microBatch; }

  /** The received messages the next ops of every rank of the stage depend on (replaces the previous set). */
  wait(events: readonly SimEvent[]): void { this.waits = [...events]; }

  override after(ranks: readonly number[]): SimEvent[] {
    if (!this.filler) return [...super.after(ranks), ...this.waits];
    return [...ranks.flatMap((r) => { const e = this.chains.get(`${this.mb}/${r}`); return e ? [e] : []; }), ...this.waits];
  }

  override compute(rank: number, name: string, cost: OpCost): void {
    if (!this.filler) { super.compute(rank, name, cost); return; }
    const ops = this.refine?.(rank, name, cost) ?? [{ name, cost }];
    for (const op of ops) {
      const dev = this.cluster.device(rank);
      const ev = this.filler.place({ device: dev.rank, stream: 'compute', name: `${op.name} mb${this.mb}`, kind: 'bytes' in op.cost ? 'memory' : 'compute', duration: dev.costOf(op.cost), after: this.after([rank]) });
      this.chains.set(`${this.mb}/${rank}`, ev);
    }
  }

  override comm(ranks: readonly number[], events: readonly SimEvent[]): void {
    if (!this.filler) { super.comm(ranks, events); return; }
    ranks.forEach((r, i) => { if (events[i]) this.chains.set(`${this.mb}/${r}`, events[i]); });
  }

  /** The last op of local rank `rank` (of the current micro-batch in overlap mode). */
  lastOf(rank: number): SimEvent | null {
    const evs = this.after([rank]).filter((e) => !this.waits.includes(e));
    return evs.reduce<SimEvent | null>((a, e) => (!a || e.end > a.end ? e : a), null);
  }

  /** Simulated time at which local rank `rank` can start its next op (of the current micro-batch in overlap mode). */
  readyAt(rank: number): number { return this.after([rank]).reduce((t, e) => Math.max(t, e.end), 0); }

  override reset(): void { super.reset(); this.waits = []; this.chains.clear(); this.mb = 0; }
}
