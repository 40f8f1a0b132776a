// Full recomputation inside a pipeline stage that runs TP/DP/EP (stage-memory.ts, `--recompute full`):
// the single-device rule of exec/stage-runner.ts, on every device of the stage in lockstep.
//   forward:  a group of layers [a, b] (makePlan's uniform groups of recomputeNumLayers inside each
//             model chunk; MemoryExecutor.mode) keeps only its per-rank input, as a record entry charged
//             to each device's ledger; the layer records are disposed, except the MoE layers' host
//             routing/dispatch state ('ep', a host value), kept on the input record;
//   backward: before layer b's records are read, the group's forward is replayed from that input with
//             the ParallelModel phases themselves (pm-phases.ts layerForward), so every op runs again on
//             the stage's devices: attention/expert compute, the EP dispatch/combine all-to-alls and the
//             TP collectives are charged again on the timeline and the comm ledger (Megatron's full
//             recompute). recordStats: false and the same ctx.seed, so router statistics, aux trackers
//             and expert counts are counted once; the replayed records get the original 'ep' host state
//             back, so the aux-loss gradient uses the real forward's statistics (a 'global' tracker may
//             have moved meanwhile). Same kernels on the same inputs: gradients are bitwise unchanged.
import { tf } from '../../backend/tf.ts';
import type { SavedActivations } from '../../model/saved.ts';
import type { LayerMode } from '../exec/memory-executor.ts';
import type { SavedLedger } from '../exec/saved-ledger.ts';
import { layerForward, type MicroBatchState, type PhaseHost } from '../pm-phases.ts';

export class StageFullRecompute {
  /** true while a group's forward is replayed (its layerForward hooks do nothing) */
  private replaying = false;

  constructor(readonly pm: PhaseHost, readonly ledgers: SavedLedger[], readonly mode: (st: MicroBatchState, l: number) => LayerMode) {}

  private isMoE(l: number): boolean { return !!this.pm.replicas[0].blocks[l].moe; }

  /** Group [a, b] containing layer l (groups never cross a chunk: each chunk's first layer is 'full'). */
  private group(st: MicroBatchState, l: number): [number, number] {
    let a = l, b = l;
    while (this.mode(st, a) === 'full-inner') a--;
    while (this.mode(st, b + 1) === 'full-inner') b++;
    return [a, b];
  }

  /** Whether layer l's forward hooks belong to full recompute (the replay's own calls do not). */
  handles(st: MicroBatchState, l: number): boolean { return this.replaying || this.mode(st, l) !== 'none'; }

  beforeForward(st: MicroBatchState, l: number, h: readonly tf.Tensor[]): void {
    if (this.replaying || this.mode(st, l) !== 'full') return;
    st.kept.set(l, h.map((x, r) => {
      const rec = this.pm.phase.newRecord(r, `${st.prefix}layers.${l}.input`);
      rec.save('input', tf.clone(x));
      return rec;
    }));
  }

  afterForward(st: MicroBatchState, l: number, recs: SavedActivations[]): void {
    if (this.replaying) return;
    const kept = st.kept.get(this.group(st, l)[0])!;
    recs.forEach((rec, r) => {
      if (this.isMoE(l)) kept[r].setHost(`ep.${l}`, rec.getHost('ep'));
      rec.dispose();
      this.ledgers[r].forget(rec);
    });
    st.layers.delete(l);
  }

  /** Before layer l's backward: replay its group's forward unless its records are already there. */
  replay(st: MicroBatchState, l: number): void {
    if (this.mode(st, l) === 'none' || st.layers.has(l)) return;
    const [a, b] = this.group(st, l), inp = st.kept.get(a)!;
    const hosts = new Map<number, unknown[]>();
    for (let k = a; k <= b; k++) if (this.isMoE(k)) hosts.set(k, inp.map((rec) => rec.getHost(`ep.${k}`)));
    let h = inp.map((rec) => tf.clone(rec.get('input')));
    inp.forEach((rec, r) => { rec.dispose(); this.ledgers[r].forget(rec); });
    st.kept.delete(a);
    const rst: MicroBatchState = { ...st, ctxs: st.ctxs.map((c) => ({ ...c, recordStats: false, routerStats: [] })) };
    this.replaying = true;
    try {
      for (let k = a; k <= b; k++) {
        h = layerForward(this.pm, rst, k, h);   // disposes its input; sets st.layers (shared map)
        const hk = hosts.get(k);
        if (hk) st.layers.get(k)!.forEach((rec, r) => rec.setHost('ep', hk[r]));   // the original routing
      }
    } finally {
      this.replaying = false;
      tf.dispose(h);
    }
  }
}
