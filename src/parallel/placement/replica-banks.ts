// Redundant expert slots in EP training (R > N physical slots, EPLB's replicas): each EP rank's expert
// bank holds S = R/P slots instead of N/P experts, a replicated expert's copies stay identical because
// their gradients are summed before the optimizer step, and the global gradient norm counts each logical
// expert once. Impure executors over a ParallelModel (tfjs); the plan is a slot table (physicalToLogical).
//
// Reaches into ParallelModel's per-rank MoE views (`epLayers`, private there) to swap in banks of S
// slots: a public hook on ParallelModel would be cleaner (asked for in the report).
import { tf } from '../../backend/tf.ts';
import { ParamStore } from '../../model/module.ts';
import { GroupedExperts } from '../../model/moe/experts.ts';
import type { EPRankLayer } from '../ep/ep-moe.ts';
import type { ParallelModel } from '../parallel-model.ts';

const epLayersOf = (pm: ParallelModel) => (pm as unknown as { epLayers: Map<number, EPRankLayer[]> }).epLayers;
const bankNames = (pm: ParallelModel, layer: number) => [...pm.expertParams].filter((n) => n.startsWith(`layers.${layer}.`)).sort();

/**
 * Replace layer `layer`'s contiguous expert banks (rank r holds experts [r·N/P, (r+1)·N/P)) by banks of
 * S = R/P slots holding `slots[r·S + j]`. Call before any optimizer is built on pm.params.
 */
export function expandBanks(pm: ParallelModel, layer: number, slots: readonly number[]): void {
  const views = epLayersOf(pm).get(layer);
  if (!views) throw new Error(`expandBanks: block ${layer} is not a MoE layer`);
  for (const g of pm.groups.ep) {
    const P = g.ranks.length, S = slots.length / P;
    const full = new Map(bankNames(pm, layer).map((n) => [n, tf.concat(g.ranks.map((r) => pm.params[r].get(n)), 0)]));   // [N, …] logical
    g.ranks.forEach((r, i) => {
      const old = views[r].experts, [, H, F] = old.w1.shape as number[];
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
      views[r].experts = experts;
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
 * replicas take the same optimizer step. Executed as an all-reduce over each EP group of the replicated
 * slots' rows (each rank contributes its own replicas, zeros elsewhere; label 'placement.replicaGrads'),
 * which over-counts the bytes of a point-to-point exchange between the holders.
 */
export function sumReplicaGrads(pm: ParallelModel, layer: number, slots: readonly number[]): void {
  const rep = replicated(slots);
  if (!rep.size) return;
  const repSlots = [...rep.values()].flat().sort((a, b) => a - b), pos = new Map(repSlots.map((p, i) => [p, i]));
  for (const g of pm.groups.ep) {
    const P = g.ranks.length, S = slots.length / P;
    for (const name of bankNames(pm, layer)) {
      const shape = pm.params[g.ranks[0]].get(name).shape, rowSize = shape.slice(1).reduce((a, b) => a * b, 1);
      const grads = g.ranks.map((r) => tf.tidy(() => tf.reshape(pm.grads[r].get(name) ?? tf.zeros(shape), [S, rowSize])));
      // contribution of rank i: row k = the gradient of slot repSlots[k] if rank i holds it
      const ins = grads.map((gr, i) => tf.tidy(() => {
        const mask = tf.tensor2d(repSlots.map((p) => (Math.floor(p / S) === i ? 1 : 0)), [repSlots.length, 1]);
        return tf.mul(tf.gather(gr, repSlots.map((p) => (Math.floor(p / S) === i ? p % S : 0))), mask);
      }));
      const res = pm.cluster.comm.allReduce(g, ins, { label: 'placement.replicaGrads', after: pm.clock.after(g.ranks) });
      pm.clock.comm(g.ranks, res.events);
      g.ranks.forEach((r, i) => {
        const summed = tf.tidy(() => {
          // per replicated slot: Σ over the expert's replicas of the all-reduced rows
          const all = res.outputs[i];
          const perExpert = new Map([...rep].map(([e, ps]) => [e, tf.addN(ps.map((p) => tf.slice(all, [pos.get(p)!, 0], [1, rowSize])))]));
          const rows = Array.from({ length: S }, (_, j) => {
            const p = i * S + j, e = slots[p];
            return perExpert.has(e) ? perExpert.get(e)! : tf.slice(grads[i], [j, 0], [1, rowSize]);
          });
          return tf.reshape(tf.concat(rows, 0), shape);
        });
        const old = pm.grads[r].grads.get(name);
        pm.grads[r].grads.set(name, summed);
        old?.dispose();
      });
      tf.dispose([...grads, ...ins, ...res.outputs]);
    }
  }
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
