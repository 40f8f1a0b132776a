// The executor half of dynamic expert placement during EP training (docs/placement.md "what to wire"):
// between two optimizer steps, every re-placed layer's expert weights AND their AdamW moments move to
// their new slots. Moves whose source slot is on another EP rank travel in one all-to-all-v per tensor
// over each EP group (charged on the timeline and in the comm ledger, label 'placement.migrate');
// moves inside a rank are local row copies. Then the EP dispatcher routes through the new slot table.
//
// Slot p of a layer lives on EP rank ⌊p/S⌋ (S = R/P slots per rank) at local row p mod S; the expert
// bank parameter `layers.<l>.moe.experts.w1` of rank r is [S, …] and holds its slots in order. Every EP
// group (expert-DP replica) migrates identically. Moves among redundant slots (R > N) work the same way.
//
// Wire bytes: the simulated device charges every tensor at its element width (bf16: 2 bytes), which is
// right for the weights but not for the fp32 AdamW moments (4 bytes per element). Tensors k >= 1 of
// `BankTensors` are therefore sent at `wireBytes[k]` bytes per element (default 4): each row is padded to
// ⌈rowSize·wireBytes/elementBytes⌉ elements on the wire, so the ledger and the timeline see the true bytes
// (the padding is dropped on receipt).
//
// Sharded optimizer state (DistributedAdamW): the parameters are full on every rank (migrate them with
// migrateLayer, tensors = [param] only), but rank (EP index i, expert-DP index j) holds slice j of the
// flattened, zero-padded moments of bank i. migrateShardedMoments moves each moment element of a moved
// row from the rank holding its source slice to the rank holding its destination slice: one all-to-all-v
// over the world per bank (m and v together, 4 bytes each), label 'placement.migrate.moments'. A row
// moved between EP ranks thus costs rowSize·8 bytes once in total (not once per expert-DP replica).
import { tf } from '../../backend/tf.ts';
import type { ParallelModel } from '../parallel-model.ts';
import type { DistributedAdamW } from '../dp/distributed-adamw.ts';
import type { SlotMove } from './migration.ts';
import { PlacementError, type PlacementSpec } from './types.ts';

export interface MigrationReport { layer: number; moves: number; crossRank: number; bytes: number; seconds: number }

/** Tensors that travel with an expert bank parameter on `rank`: the parameter itself, then e.g. its
 *  optimizer moments (all of the same shape, rows = slots). */
export type BankTensors = (rank: number, name: string) => tf.Variable[];

/**
 * Apply `moves` of layer `layer` (block index) to every EP group of `pm`: prev/next are the slot tables
 * (physicalToLogical) before and after. Returns the bytes sent between ranks and the simulated seconds.
 */
export function migrateLayer(pm: ParallelModel, layer: number, prev: readonly number[], next: readonly number[], moves: readonly SlotMove[], tensors: BankTensors,
  opts: { wireBytes?: readonly number[] } = {}): MigrationReport {
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
      if (pm.opts.distributedOptimizer && banks[0].length > 1) throw new Error('migrateLayer: with distributedOptimizer pass only the parameter (tensors = [param]) and move the moments with migrateShardedMoments');
      for (let k = 0; k < banks[0].length; k++) {
        const vars = banks.map((b) => b[k]), shape = vars[0].shape, rowSize = shape.slice(1).reduce((a, b) => a * b, 1);
        const flat = vars.map((v) => tf.reshape(v, [S, rowSize]));
        const wire = wireColumns(pm, g.ranks[0], rowSize, opts.wireBytes?.[k] ?? (k === 0 ? undefined : MOMENT_BYTES));
        const inputs = flat.map((f, i) => tf.tidy(() => {
          if (!send[i].length) return tf.zeros([0, wire]);
          const rows = tf.gather(f, send[i].map((x) => x.row));
          return wire > rowSize ? tf.pad(rows, [[0, 0], [0, wire - rowSize]]) : rows;
        }));
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
          const recv = wire > rowSize ? tf.slice(res.outputs[i], [0, 0], [-1, rowSize]) : res.outputs[i];
          vars[i].assign(tf.reshape(tf.gather(tf.concat([flat[i], recv], 0), idx), shape));
        }));
        tf.dispose([...flat, ...inputs, ...res.outputs]);
      }
    }
  }
  return { layer, moves: moves.length, crossRank, bytes: pm.cluster.commLedger.total() - bytes0, seconds: pm.cluster.timeline.makespan - t0 };
}

/**
 * Move the sharded AdamW moments (DistributedAdamW) of layer `layer`'s expert banks along `moves`
 * (prev → next slot tables); see the header. Returns the wire bytes and simulated seconds.
 */
export function migrateShardedMoments(pm: ParallelModel, dopt: DistributedAdamW, layer: number, next: readonly number[], moves: readonly SlotMove[]): { bytes: number; seconds: number } {
  const names = [...pm.expertParams].filter((n) => n.startsWith(`layers.${layer}.`)).sort();
  const W = pm.layout.world, world = { kind: 'ep-edp', ranks: [...Array(W).keys()] }, shards = dopt.momentShards();
  const bytes0 = pm.cluster.commLedger.total(), t0 = pm.cluster.timeline.makespan;
  const moveOf = new Map(moves.map((m) => [m.slot, m]));
  const ep0 = pm.groups.ep[0].ranks, P = ep0.length, S = next.length / P;
  for (const name of names) {
    const numel = pm.params[ep0[0]].get(name).size, rowSize = numel / S;
    const edpOf = (i: number) => pm.gradGroup(name, ep0[i]).ranks;   // ranks holding slices of EP index i's bank
    const n = edpOf(0).length, size = Math.ceil(numel / n);
    const holder = (i: number, j: number) => edpOf(i)[j];
    const old = new Map<number, { m: Float32Array; v: Float32Array }>();
    for (let r = 0; r < W; r++) {
      const sh = shards.get(`${name}@${r}`);
      if (sh) old.set(r, { m: sh.m.dataSync() as Float32Array, v: sh.v.dataSync() as Float32Array });
    }
    // per source rank: [dst rank, dst offset, src offset], sorted by dst (the all-to-all's order)
    const send: [number, number, number][][] = Array.from({ length: W }, () => []);
    const fresh = new Map([...old].map(([r, o]) => [r, { m: Float32Array.from(o.m), v: Float32Array.from(o.v) }]));
    for (let i = 0; i < P; i++) for (let j = 0; j < n; j++) {
      const dst = holder(i, j);
      for (let o = 0; o < size && j * size + o < numel; o++) {
        const f = j * size + o, y = Math.floor(f / rowSize), c = f % rowSize, mv = moveOf.get(i * S + y);
        if (!mv) continue;
        const si = Math.floor(mv.source / S), sf = (mv.source % S) * rowSize + c, sj = Math.floor(sf / size), src = holder(si, sj);
        if (src === dst) { const a = old.get(src)!, b = fresh.get(dst)!; b.m[o] = a.m[sf % size]; b.v[o] = a.v[sf % size]; }
        else send[src].push([dst, o, sf % size]);
      }
    }
    send.forEach((s) => s.sort((a, b) => a[0] - b[0]));
    const wire = wireColumns(pm, 0, 2, MOMENT_BYTES);   // m and v side by side, 4 bytes each
    const inputs = send.map((s, r) => {
      const buf = new Float32Array(s.length * wire), o = old.get(r);
      s.forEach(([, , so], k) => { buf[k * wire] = o!.m[so]; buf[k * wire + 1] = o!.v[so]; });
      return tf.tensor2d(buf, [s.length, wire]);
    });
    const splits = send.map((s) => Array.from({ length: W }, (_, d) => s.filter((x) => x[0] === d).length));
    const res = pm.cluster.comm.allToAllV(world, inputs, splits, { label: 'placement.migrate.moments', after: pm.clock.after(world.ranks) });
    pm.clock.comm(world.ranks, res.events);
    for (let d = 0; d < W; d++) {
      const got = res.outputs[d].dataSync(), b = fresh.get(d);
      let k = 0;
      for (let src = 0; src < W; src++) for (const [dd, o] of send[src]) if (dd === d) { b!.m[o] = got[k * wire]; b!.v[o] = got[k * wire + 1]; k++; }
    }
    tf.dispose([...inputs, ...res.outputs]);
    for (const [r, f] of fresh) {
      const sh = shards.get(`${name}@${r}`)!;
      tf.tidy(() => { sh.m.assign(tf.tensor1d(f.m)); sh.v.assign(tf.tensor1d(f.v)); });
    }
  }
  return { bytes: pm.cluster.commLedger.total() - bytes0, seconds: pm.cluster.timeline.makespan - t0 };
}

/** fp32 optimizer moments: bytes per element on the wire. */
export const MOMENT_BYTES = 4;

/** Elements per row on the wire so that the device (charging `elementBytes` per element) sees rowSize·bytes bytes. */
function wireColumns(pm: ParallelModel, rank: number, rowSize: number, bytes: number | undefined): number {
  const eb = pm.cluster.device(rank).elementBytes ?? 4;
  return bytes === undefined ? rowSize : Math.ceil((rowSize * bytes) / eb);
}

/**
 * The placement problem of `pm`'s EP groups: D = ep devices, R = N + redundantSlots slots, and the EP
 * group's node layout (numNodes = nodes the group spans, each holding a contiguous, equal block of its
 * ranks), so that hierarchical solvers (eplb with numGroups % numNodes = 0, ours) keep expert groups
 * within a node. numGroups defaults to the router's group-limited routing groups (moe.numGroups) when it
 * divides the experts, else 1. Throws a PlacementError for what the executor cannot run: ep < 2, EP
 * groups with different node layouts. (All three dispatchers route through `pm.moe.placements`; sharded
 * optimizer state is migrated by migrateShardedMoments.)
 */
export function epPlacementSpec(pm: ParallelModel, o: { redundantSlots?: number; numGroups?: number } = {}): PlacementSpec {
  const p = epPlacementProblems(pm);
  const nodesOf = (ranks: readonly number[]) => ranks.map((r) => pm.cluster.device(r).node);
  const layouts = pm.groups.ep.map((g) => nodeBlocks(nodesOf(g.ranks)));
  const blocks = layouts[0];
  if (!blocks) p.push(`EP group ranks [${pm.groups.ep[0].ranks}] are not contiguous, equal blocks per node (nodes [${nodesOf(pm.groups.ep[0].ranks)}])`);
  else if (layouts.some((b) => b !== blocks)) p.push('EP groups span different numbers of nodes');
  const N = pm.cfg.moe.numExperts, routerGroups = pm.cfg.moe.numGroups;
  const numGroups = o.numGroups ?? (routerGroups && N % routerGroups === 0 ? routerGroups : 1);
  if (p.length) throw new PlacementError(p);
  return { numExperts: N, numReplicas: N + (o.redundantSlots ?? 0), numDevices: pm.layout.ep, numNodes: blocks!, numGroups };
}

/** Why dynamic placement cannot run on `pm` (empty when it can). */
export function epPlacementProblems(pm: ParallelModel): string[] {
  const p: string[] = [];
  if (pm.layout.ep < 2) p.push(`dynamic placement needs ep >= 2 (got ep=${pm.layout.ep})`);
  return p;
}

/** Number of nodes when `nodes` (per group rank) is made of contiguous equal blocks of distinct nodes, else null. */
function nodeBlocks(nodes: readonly number[]): number | null {
  const order: number[] = [];
  nodes.forEach((n, i) => { if (i === 0 || nodes[i - 1] !== n) order.push(n); });
  if (new Set(order).size !== order.length) return null;
  const per = nodes.length / order.length;
  return Number.isInteger(per) && order.every((n) => nodes.filter((x) => x === n).length === per) ? order.length : null;
}
