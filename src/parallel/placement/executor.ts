// The executor half of dynamic expert placement during EP training (docs/placement.md "what to wire"):
// between two optimizer steps, every re-placed layer's expert weights AND their AdamW moments move to
// their new slots. Moves whose source slot is on another EP rank travel in one all-to-all-v per tensor
// over each EP group (charged on the timeline and in the comm ledger, label 'placement.migrate');
// moves inside a rank are local row copies. Then the EP dispatcher routes through the new slot table.
//
// Slot p of a layer lives on EP rank ⌊p/S⌋ (S = R/P slots per rank) at local row p mod S; the expert
// bank parameter `layers.<l>.moe.experts.w1` of rank r is [S, …] and holds its slots in order. Every EP
// group (expert-DP replica) migrates identically. Only R = N (no redundant slots) is executed.
import { tf } from '../../backend/tf.ts';
import type { ParallelModel } from '../parallel-model.ts';
import type { SlotMove } from './migration.ts';

export interface MigrationReport { layer: number; moves: number; crossRank: number; bytes: number; seconds: number }

/** Tensors that travel with an expert bank parameter on `rank`: the parameter itself, then e.g. its
 *  optimizer moments (all of the same shape, rows = slots). */
export type BankTensors = (rank: number, name: string) => tf.Variable[];

/**
 * Apply `moves` of layer `layer` (block index) to every EP group of `pm`: prev/next are the slot tables
 * (physicalToLogical) before and after. Returns the bytes sent between ranks and the simulated seconds.
 */
export function migrateLayer(pm: ParallelModel, layer: number, prev: readonly number[], next: readonly number[], moves: readonly SlotMove[], tensors: BankTensors): MigrationReport {
  const names = [...pm.expertParams].filter((n) => n.startsWith(`layers.${layer}.`)).sort();
  const R = next.length, bytes0 = pm.cluster.commLedger.total(), t0 = pm.cluster.timeline.makespan;
  let crossRank = 0;
  for (const g of pm.groups.ep) {
    const P = g.ranks.length, S = R / P;
    // per source rank: rows to send, grouped by destination rank
    const send: { dst: number; row: number; slot: number }[][] = Array.from({ length: P }, () => []);
    for (const m of moves) {
      if (prev[m.source] !== m.to) throw new Error(`migrateLayer: slot ${m.source} holds ${prev[m.source]}, not expert ${m.to}`);
      const src = Math.floor(m.source / S), dst = Math.floor(m.slot / S);
      if (src !== dst) send[src].push({ dst, row: m.source % S, slot: m.slot });
    }
    send.forEach((s) => s.sort((a, b) => a.dst - b.dst || a.slot - b.slot));
    if (g === pm.groups.ep[0]) crossRank = send.reduce((a, s) => a + s.length, 0);
    const splits = send.map((s) => Array.from({ length: P }, (_, q) => s.filter((x) => x.dst === q).length));
    // where each destination slot finds its received row: offset in the receiver's output
    const recvRow = new Map<number, number>();
    for (let q = 0; q < P; q++) {
      let o = 0;
      for (let src = 0; src < P; src++) for (const x of send[src]) if (x.dst === q) recvRow.set(x.slot, o++);
    }
    const moveOf = new Map(moves.map((m) => [m.slot, m]));
    for (const name of names) {
      const banks = g.ranks.map((r) => tensors(r, name));
      for (let k = 0; k < banks[0].length; k++) {
        const vars = banks.map((b) => b[k]), shape = vars[0].shape, rowSize = shape.slice(1).reduce((a, b) => a * b, 1);
        const flat = vars.map((v) => tf.reshape(v, [S, rowSize]));
        const inputs = flat.map((f, i) => tf.tidy(() => (send[i].length ? tf.gather(f, send[i].map((x) => x.row)) : tf.zeros([0, rowSize]))));
        const res = pm.cluster.comm.allToAllV(g, inputs, splits, { label: 'placement.migrate', after: pm.clock.after(g.ranks) });
        pm.clock.comm(g.ranks, res.events);
        g.ranks.forEach((_, i) => tf.tidy(() => {
          // rows [0, S) = the old bank, [S, …) = received rows
          const idx = Array.from({ length: S }, (_, j) => {
            const m = moveOf.get(i * S + j);
            if (!m) return j;
            const src = Math.floor(m.source / S);
            return src === i ? m.source % S : S + recvRow.get(i * S + j)!;
          });
          vars[i].assign(tf.reshape(tf.gather(tf.concat([flat[i], res.outputs[i]], 0), idx), shape));
        }));
        tf.dispose([...flat, ...inputs, ...res.outputs]);
      }
    }
  }
  return { layer, moves: moves.length, crossRank, bytes: pm.cluster.commLedger.total() - bytes0, seconds: pm.cluster.timeline.makespan - t0 };
}
