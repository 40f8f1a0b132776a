// The StepClock of one pipeline stage: besides each rank's previous op, the stage's next op waits for
// the messages (activations or gradients from the neighbouring stage) its current action consumes.
import type { SimEvent } from '../../device/timeline.ts';
import { StepClock } from '../clock.ts';

export class PipeClock extends StepClock {
  private waits: SimEvent[] = [];

  /** The received messages the next ops of every rank of the stage depend on (replaces the previous set). */
  wait(events: readonly SimEvent[]): void { this.waits = [...events]; }

  override after(ranks: readonly number[]): SimEvent[] { return [...super.after(ranks), ...this.waits]; }

  /** Simulated time at which local rank `rank` can start its next op. */
  readyAt(rank: number): number { return this.after([rank]).reduce((t, e) => Math.max(t, e.end), 0); }

  override reset(): void { super.reset(); this.waits = []; }
}
