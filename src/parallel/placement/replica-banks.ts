// Redundant expert slots in EP training (R > N physical slots, EPLB's replicas): each EP rank's expert
// bank holds S = R/P slots instead of N/P experts, a replicated expert's copies stay identical because
// their gradients are summed before the optimizer step, and the global gradient norm counts each logical
// expert once. Impure executors over a ParallelModel (tfjs); the plan is a slot table (physicalToLogical).
//
// Swaps banks through ParallelModel's public hooks (pm.expertBank / pm.setExpertBank).
//
// Replica-gradient wire bytes (docs/placement.md "replica gradients"): a real implementation only
// exchanges the rows of a replicated expert among the EP ranks that hold a replica of it. Here each
// set of holder ranks runs one ring all-reduce of its experts' rows (replicas on the same rank are summed
// locally first): per expert with k holder ranks, 2·(k−1)·rowBytes on the wire per EP group, the same as
// a reduce to one owner plus the broadcast back. Experts whose replicas all sit on one rank cost nothing.
import { tf } from '../../backend/tf.ts';
import { ParamStore } from '../../model/module.ts';
import { GroupedExperts } from '../../model/moe/experts.ts';
import type { ProcessGroup } from '../../device/groups.ts';
import type { ParallelModel } from '../parallel-model.ts';

const bankNames = (pm: ParallelModel, layer: number) => [...pm.expertParams].filter((n) => n.startsWith(`layers.${layer}.`)).sort();

/**
 * Replace layer `layer`'s contiguous expert banks (rank r holds experts [r·N/P, (r+1)·N/P)) by banks of
 * S = R/P slots holding `slots[r·S + j]`. Call before any optimizer is built on pm.params.
 */
export function expandBanks(pm: ParallelModel, layer: number, slots: readonly number[]): void {
  if (!pm.moeLayers.includes(layer)) throw new Error(`expandBanks: block ${layer} is not a MoE layer`);
  for (const g of pm.groups.ep) {
    const P = g.ranks.length, S = slots.length / P;
    const full = new Map(bankNames(pm, layer).map((n) => [n, tf.concat(g.ranks.map((r) => pm.params[r].get(n)), 0)]));   // [N, …] logical
    g.ranks.forEach((r, i) => {
      const old = pm.expertBank(r, layer).experts, [, H, F] = old.w1.shape as number[];
      const rows = ['w1', 'w3', 'w2'].map((n) => tf.gather(full.get(`${old.prefix}.${n}`)!, slots.slice(i * S, (i + 1) * S)));   // GroupedExperts inits w1, w3, w2 in order
      const tmp = new ParamStore();
      const experts = new GroupedExperts(old.prefix, S, H, F, tmp, () => rows.shift()!, 0);
      const dev = pm.cluster.device(r);
      for (const n of ['w1', 'w3', 'w2']) {
        const name = `${old.prefix}.${n}`, prev = pm.params[r].vars.get(name)!, next = tmp.vars.get(name)!;
        dev.hbm.alloc('weights', `${name} redundant slots`, (next.size - prev.size) * (dev.elementBytes ?? 4));
        prev.dispose();
        pm.params[r].vars.set(name, next);
      }
      tmp.vars.clear();
      pm.setExpertBank(r, layer, experts);
    });
    for (const t of full.values()) t.dispose();
  }
}

/** Logical expert → its slots, for experts with more than one replica. */
function replicated(slots: readonly number[]): Map<number, number[]> {
  const m = new Map<number, number[]>();
  slots.forEach((e, p) => m.set(e, [...(m.get(e) ?? []), p]));
  for (const [e, ps] of m) if (ps.length < 2) m.delete(e);
  return m;
}

/**
 * Sum the gradients of every replica of each logical expert (after the expert-DP reduction), so all
 * replicas take the same optimizer step. Per EP group, the replicated experts are grouped by the set of
 * EP ranks holding their replicas; each such set all-reduces (ring) the locally pre-summed rows of its
 * experts among those ranks only (group kind 'ep-replica', label 'placement.replicaGrads').
 */
export function sumReplicaGrads(pm: ParallelModel, layer: number, slots: readonly number[]): void {
  const rep = replicated(slots);
  if (!rep.size) return;
  for (const g of pm.groups.ep) {
    const P = g.ranks.length, S = slots.length / P;
    const sets = holderSets(rep, S);
    for (const name of bankNames(pm, layer)) {
      const shape = pm.params[g.ranks[0]].get(name).shape, rowSize = shape.slice(1).reduce((a, b) => a * b, 1);
      const grads = g.ranks.map((r) => tf.tidy(() => tf.reshape(pm.grads[r].get(name) ?? tf.zeros(shape), [S, rowSize])));
      const total = new Map<string, tf.Tensor>();   // `${epIndex}:${expert}` → Σ over the expert's replicas [1, rowSize]
      const held: tf.Tensor[] = [];
      for (const { holders, experts } of sets) {
        // holder i's contribution: Σ of its own replicas of each expert, [experts, rowSize]
        const parts = holders.map((i) => tf.tidy(() => tf.concat(experts.map((e) => rep.get(e)!.filter((p) => Math.floor(p / S) === i)
          .map((p) => tf.slice(grads[i], [p % S, 0], [1, rowSize])).reduce((a, b) => tf.add(a, b))), 0)));
        let sums = parts;
        if (holders.length > 1) {
          const sub: ProcessGroup = { kind: 'ep-replica', ranks: holders.map((i) => g.ranks[i]) };
          const res = pm.cluster.comm.allReduce(sub, parts, { label: 'placement.replicaGrads', after: pm.clock.after(sub.ranks) });
          pm.clock.comm(sub.ranks, res.events);
          tf.dispose(parts);
          sums = res.outputs;
        }
        held.push(...sums);
        holders.forEach((i, j) => experts.forEach((e, k) => total.set(`${i}:${e}`, sums[j].slice([k, 0], [1, rowSize]))));
      }
      g.ranks.forEach((r, i) => {
        const summed = tf.tidy(() => tf.reshape(tf.concat(Array.from({ length: S }, (_, j) => total.get(`${i}:${slots[i * S + j]}`) ?? tf.slice(grads[i], [j, 0], [1, rowSize])), 0), shape));
        const old = pm.grads[r].grads.get(name);
        pm.grads[r].grads.set(name, summed);
        old?.dispose();
      });
      tf.dispose([...grads, ...held, ...total.values()]);
    }
  }
}

/** Replicated experts grouped by the (sorted) EP indices holding their replicas. */
function holderSets(rep: Map<number, number[]>, S: number): { holders: number[]; experts: number[] }[] {
  const m = new Map<string, { holders: number[]; experts: number[] }>();
  for (const [e, ps] of [...rep].sort((a, b) => a[0] - b[0])) {
    const holders = [...new Set(ps.map((p) => Math.floor(p / S)))].sort((a, b) => a - b), key = holders.join(',');
    if (!m.has(key)) m.set(key, { holders, experts: [] });
    m.get(key)!.experts.push(e);
  }
  return [...m.values()];
}

/** Wire bytes sumReplicaGrads charges per EP group and bank parameter of `rowBytes` bytes per slot row:
 *  Σ over replicated experts of 2·(k−1)·rowBytes, k = EP ranks holding a replica. */
export function replicaGradBytes(slots: readonly number[], numRanks: number, rowBytes: number): number {
  const S = slots.length / numRanks;
  let b = 0;
  for (const { holders, experts } of holderSets(replicated(slots), S)) b += 2 * (holders.length - 1) * experts.length * rowBytes;
  return b;
}

/** Σ over replicated experts of (copies − 1)·‖g_e‖² on EP group 0: what pm.globalGradNorm() over-counts. */
export function replicaNormExcess(pm: ParallelModel, layer: number, slots: readonly number[]): number {
  const rep = replicated(slots), g = pm.groups.ep[0], S = slots.length / g.ranks.length;
  let sq = 0;
  for (const name of bankNames(pm, layer)) for (const [, ps] of rep) {
    const p = ps[0], gr = pm.grads[g.ranks[Math.floor(p / S)]].get(name);
    if (!gr) continue;
    const t = tf.tidy(() => tf.sum(tf.square(tf.gather(gr, [p % S]))));
    sq += (ps.length - 1) * t.dataSync()[0];
    t.dispose();
  }
  return sq;
}
