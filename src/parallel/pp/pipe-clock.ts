// The StepClock of one pipeline stage. Besides each rank's previous op, the stage's next op waits for
// the messages (activations or gradients from the neighbouring stage) its current action consumes.
//
// Overlap mode (adaptive pipe overlap, pp-model.ts `overlap`): the dependency chain is per
// (micro-batch, rank) instead of per rank, i.e. an op of micro-batch m waits only for m's previous op
// on that rank (and its received message), not for ops of the other micro-batch of an F/B pair; the
// ops go through gap-fill.ts, which places a pair's ops with a list scheduler. So while micro-batch
// m's EP all-to-all runs on a comm stream, compute of the paired micro-batch can run on the compute
// stream. The tensors are computed in program order either way.
//
// Backward split (on by default here, clock.ts `splitBackward`): a layer's backward is charged as dX
// (on the micro-batch's chain) and dW (after the same inputs, on no chain: nothing of the micro-batch
// waits for it, so the send of the input gradient and the next layer's all-to-all do not either; the
// list scheduler puts it into compute gaps). dW only has to end before the step's gradient sync: the
// driver ends with `use(STEP_TAIL)`, whose chain is every op of the rank, dW included.
import type { Cluster } from '../../device/cluster.ts';
import type { OpCost } from '../../device/device.ts';
import type { SimEvent } from '../../device/timeline.ts';
import { splitBackwardOps, StepClock, type RefinedOp } from '../clock.ts';
import type { GapFiller } from './gap-fill.ts';

/** The micro-batch id whose chain is the end of the step: every op of the rank (all micro-batches, every dW). */
export const STEP_TAIL = -1;

export class PipeClock extends StepClock {
  private waits: SimEvent[] = [];
  private mb = 0;
  private chains = new Map<string, SimEvent>();
  /** overlap mode: every dW event of each local rank (off the chains) */
  private weightGrads = new Map<number, SimEvent[]>();
  override splitBackward = true;

  /** `filler`: overlap mode (per-micro-batch chains, pairs placed by gap-fill.ts); null: one chain per rank. */
  constructor(cluster: Cluster, readonly filler: GapFiller | null = null) { super(cluster); }

  get overlap(): boolean { return this.filler !== null; }

  /** The micro-batch whose ops come next (overlap mode keys the chains by it). */
  use(microBatch: number): void { this.mb = microBatch; }

  /** The received messages the next ops of every rank of the stage depend on (replaces the previous set; clears `waitOn`). */
  wait(events: readonly SimEvent[]): void { this.waits = [...events]; this.rankWaits.clear(); }

  /** Events the next ops of local rank `rank` also depend on until the next `wait` (a layer's swap-ins, stage-memory.ts). */
  waitOn(rank: number, events: readonly SimEvent[]): void {
    if (events.length) this.rankWaits.set(rank, [...(this.rankWaits.get(rank) ?? []), ...events]);
  }
  private rankWaits = new Map<number, SimEvent[]>();
  private extra(ranks: readonly number[]): SimEvent[] { return [...this.waits, ...ranks.flatMap((r) => this.rankWaits.get(r) ?? [])]; }

  override after(ranks: readonly number[]): SimEvent[] {
    if (!this.filler) return [...super.after(ranks), ...this.extra(ranks)];
    if (this.mb === STEP_TAIL) return [...ranks.flatMap((r) => this.tail(r)), ...this.extra(ranks)];
    return [...ranks.flatMap((r) => { const e = this.chains.get(`${this.mb}/${r}`); return e ? [e] : []; }), ...this.extra(ranks)];
  }

  override compute(rank: number, name: string, cost: OpCost): void {
    if (!this.filler) { super.compute(rank, name, cost); return; }
    for (const op of this.refine?.(rank, name, cost) ?? [{ name, cost }]) this.chains.set(`${this.mb}/${rank}`, this.placeOp(rank, op, this.after([rank])));
  }

  override backward(rank: number, name: string, cost: OpCost): void {
    if (!this.filler || !this.splitBackward) { super.backward(rank, name, cost); return; }
    const refined = this.refine?.(rank, name, cost) ?? null;
    const ops = splitBackwardOps(name, cost, refined ? 0 : this.cluster.device(rank).costOf(cost), refined);
    const inputs = this.after([rank]);   // dX and dW read the same inputs (the layer's saved tensors and dY)
    for (const op of ops.filter((o) => o.part === 'dX')) this.chains.set(`${this.mb}/${rank}`, this.placeOp(rank, op, this.after([rank]), { part: 'dX', flops: op.flops }));
    const ws = this.weightGrads.get(rank) ?? this.weightGrads.set(rank, []).get(rank)!;
    for (const op of ops.filter((o) => o.part === 'dW')) ws.push(this.placeOp(rank, op, inputs, { part: 'dW', flops: op.flops, wgrad: 1 }));
  }

  private placeOp(rank: number, op: RefinedOp, after: SimEvent[], args?: Record<string, number | string>): SimEvent {
    const dev = this.cluster.device(rank);
    return this.filler!.place({ device: dev.rank, stream: 'compute', name: `${op.name} mb${this.mb}`, kind: 'bytes' in op.cost ? 'memory' : 'compute', duration: dev.costOf(op.cost), after, args });
  }

  /** The step's tail on local rank r: the latest-ending op of any chain and the latest-ending dW (all placed by then). */
  private tail(r: number): SimEvent[] {
    const last = (evs: SimEvent[]) => evs.reduce<SimEvent | null>((a, e) => (!a || e.end > a.end ? e : a), null);
    const chain = last([...this.chains].filter(([k]) => k.endsWith(`/${r}`)).map(([, e]) => e));
    const w = last(this.weightGrads.get(r) ?? []);
    return [chain, w].filter((e): e is SimEvent => e !== null);
  }

  override comm(ranks: readonly number[], events: readonly SimEvent[]): void {
    if (!this.filler) { super.comm(ranks, events); return; }
    ranks.forEach((r, i) => { if (events[i]) this.chains.set(`${this.mb}/${r}`, events[i]); });
  }

  /** The last op of local rank `rank` (of the current micro-batch in overlap mode). */
  lastOf(rank: number): SimEvent | null {
    const skip = this.extra([rank]);
    const evs = this.after([rank]).filter((e) => !skip.includes(e));
    return evs.reduce<SimEvent | null>((a, e) => (!a || e.end > a.end ? e : a), null);
  }

  /** Simulated time at which local rank `rank` can start its next op (of the current micro-batch in overlap mode). */
  readyAt(rank: number): number { return this.after([rank]).reduce((t, e) => Math.max(t, e.end), 0); }

  override reset(): void { super.reset(); this.waits = []; this.rankWaits.clear(); this.chains.clear(); this.weightGrads.clear(); this.mb = 0; }
}
