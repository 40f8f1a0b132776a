// What changes when a layer is re-placed: a slot-level migration plan an executor can run (copy an
// expert's weights, fp32 master weights and optimizer moments from a source slot into a target slot).
// Devices are interchangeable and slots within a device are unordered, so before diffing we relabel the
// new plan's devices and slots to keep as many experts where they already are (fewer bytes to move).
import { isHierarchical, type PlacementSpec } from './types.ts';

export interface SlotMove {
  slot: number; // physical slot whose content changes
  device: number; // device of that slot
  from: number; // logical expert it held
  to: number; // logical expert it will hold
  source: number; // a slot of the previous plan that holds `to` (same device first, then same node)
}

/** Multiset overlap of two expert lists. */
function overlap(a: number[], b: number[]): number {
  const m = new Map<number, number>();
  for (const e of a) m.set(e, (m.get(e) ?? 0) + 1);
  let n = 0;
  for (const e of b) { const c = m.get(e) ?? 0; if (c > 0) { n++; m.set(e, c - 1); } }
  return n;
}

/**
 * Relabel `next` (same loads, same device contents) to minimize changed slots against `prev`:
 * greedy max-overlap matching of devices (within a node in hierarchical mode, where moving a device to
 * another node would move its groups), then experts kept at their old slot index inside a device.
 */
export function alignToPrevious(prev: readonly number[], next: readonly number[], spec: PlacementSpec): number[] {
  const D = spec.numDevices, S = next.length / D;
  const scope = isHierarchical(spec) ? D / spec.numNodes : D;
  const contents = (slots: readonly number[], d: number) => slots.slice(d * S, (d + 1) * S);
  const target = new Array<number>(D).fill(-1); // new device d -> device label it takes
  for (let base = 0; base < D; base += scope) {
    const pairs: [number, number, number][] = []; // [overlap, newDev, oldDev]
    for (let a = base; a < base + scope; a++) {
      for (let b = base; b < base + scope; b++) pairs.push([overlap(contents(next, a), contents(prev, b)), a, b]);
    }
    pairs.sort((x, y) => y[0] - x[0] || x[1] - y[1] || x[2] - y[2]);
    const usedOld = new Set<number>();
    for (const [, a, b] of pairs) if (target[a] < 0 && !usedOld.has(b)) { target[a] = b; usedOld.add(b); }
  }
  const place = (label: number[]) => {
    const out = new Array<number>(next.length).fill(-1);
    for (let a = 0; a < D; a++) {
      const b = label[a], old = contents(prev, b), todo = contents(next, a);
      const free: number[] = [];
      for (let j = 0; j < S; j++) { // keep experts that already sit at slot j of device b
        const i = todo.indexOf(old[j]);
        if (i >= 0) { out[b * S + j] = old[j]; todo.splice(i, 1); } else free.push(j);
      }
      free.forEach((j, i) => { out[b * S + j] = todo[i]; });
    }
    return out;
  };
  // greedy matching is not optimal, so keep the identity labeling when it changes fewer slots
  const changed = (slots: number[]) => slots.reduce((n, e, p) => n + (e === prev[p] ? 0 : 1), 0);
  const matched = place(target), identity = place(Array.from({ length: D }, (_, d) => d));
  return changed(identity) <= changed(matched) ? identity : matched;
}

/** The slots that change from `prev` to `next`, each with a source slot holding the incoming expert. */
export function migrationPlan(prev: readonly number[], next: readonly number[], spec: PlacementSpec): SlotMove[] {
  const S = prev.length / spec.numDevices, perNode = spec.numDevices / spec.numNodes;
  const holders = new Map<number, number[]>(); // expert -> slots in prev
  prev.forEach((e, p) => holders.set(e, [...(holders.get(e) ?? []), p]));
  const moves: SlotMove[] = [];
  for (let p = 0; p < next.length; p++) {
    if (prev[p] === next[p]) continue;
    const d = Math.floor(p / S), node = Math.floor(d / perNode);
    const hs = holders.get(next[p]) ?? [];
    const rank = (h: number) => (Math.floor(h / S) === d ? 0 : Math.floor(h / S / perNode) === node ? 1 : 2);
    const source = hs.slice().sort((x, y) => rank(x) - rank(y) || x - y)[0] ?? -1;
    moves.push({ slot: p, device: d, from: prev[p], to: next[p], source });
  }
  return moves;
}
