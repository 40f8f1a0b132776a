// Impure executor: issues the per-stage programs of planOverlapStep onto a simulated cluster's
// device streams (compute / comm-intra / comm-inter), one event per op per device.
//
// Host issue model: each stage's host thread issues its program in order; among the stages whose next
// op has all its dependencies issued, the one whose op can start earliest (simulated time) goes first,
// so every stream's FIFO order follows simulated time across stages. An EP a2a is a collective: it
// starts on all 8 EP ranks at the latest rank's ready time. A PP send occupies the sender's and the
// receiver's stream of the link type between them (HCCS inside a node, RoCE across) at the same time.
import { sendRecvTime } from '../../device/cost.ts';
import type { Cluster } from '../../device/cluster.ts';
import type { SimEvent, StreamName } from '../../device/timeline.ts';
import type { PlanOp } from './plan.ts';

/** stageRanks[stage][i] = global rank of EP rank i of that stage. */
export type StagePlacement = number[][];

/**
 * EP=8 over 2 nodes × 4 NPUs per stage on 4 nodes × 8 NPUs: stages 0 and 1 share nodes 0-1 (local
 * ranks 0-3 and 4-7), stages 2 and 3 share nodes 2-3. The EP group crosses nodes (hierarchical a2a as
 * in the paper); PP p2p 0→1 and 2→3 stay inside a node, 1→2 crosses nodes.
 */
export function overlapPlacement(pp = 4, ep = 8, devicesPerNode = 8, nodesPerEp = 2): StagePlacement {
  const perNode = ep / nodesPerEp, stagesPerNodeGroup = devicesPerNode / perNode;
  if (!Number.isInteger(perNode) || !Number.isInteger(stagesPerNodeGroup)) throw new Error(`placement: EP ${ep} over ${nodesPerEp} nodes does not tile ${devicesPerNode} devices per node`);
  return Array.from({ length: pp }, (_, s) => Array.from({ length: ep }, (_, e) => {
    const node = nodesPerEp * Math.floor(s / stagesPerNodeGroup) + Math.floor(e / perNode);
    const local = perNode * (s % stagesPerNodeGroup) + (e % perNode);
    return node * devicesPerNode + local;
  }));
}

export interface ExecuteResult {
  /** events[id][i] = event of op `id` on EP rank i (p2p: the sender's event) */
  events: Map<string, SimEvent[]>;
  issued: number;
}

export function executeOverlapStep(cluster: Cluster, programs: PlanOp[][], placement: StagePlacement): ExecuteResult {
  const tl = cluster.timeline;
  const events = new Map<string, SimEvent[]>();
  const ptr = programs.map(() => 0);
  const depsOf = (o: PlanOp, i: number): SimEvent[] => o.deps.map((d) => events.get(d)![i]);
  const streamOf = (o: PlanOp, i: number): StreamName => {
    if (o.stream !== 'p2p') return o.stream;
    const a = placement[o.stage][i], b = placement[o.peerStage!][i];
    return cluster.nodeOf(a) === cluster.nodeOf(b) ? 'comm-intra' : 'comm-inter';
  };
  /** Earliest start of `o`: max over its devices (and p2p peers) of stream-free and dependencies. */
  const readyAt = (o: PlanOp): number => {
    let t = 0;
    placement[o.stage].forEach((dev, i) => {
      const st = streamOf(o, i), after = depsOf(o, i);
      t = Math.max(t, tl.readyTime(dev, st, after));
      if (o.stream === 'p2p') t = Math.max(t, tl.readyTime(placement[o.peerStage!][i], st, after));
    });
    return t;
  };
  const issue = (o: PlanOp): void => {
    const args = { mb: o.mb, layer: o.layer, phase: o.phase, pair: o.pair, dir: o.dir, ep: o.ep ? 1 : 0 };
    const name = o.layer >= 0 ? `${o.dir}${o.mb} L${o.layer} ${o.name}` : `${o.dir}${o.mb} ${o.dir === 'F' ? 'send act' : 'send grad'} → stage ${o.peerStage}`;
    let evs: SimEvent[];
    if (o.stream === 'compute') {
      const dur = o.dur as number[];
      evs = placement[o.stage].map((dev, i) => cluster.device(dev).charge(name, { seconds: dur[i] }, { after: depsOf(o, i), args }));
    } else if (o.stream === 'p2p') {
      // Each EP rank i sends to EP rank i of the peer stage; a pair starts when both ends are free.
      evs = placement[o.stage].map((dev, i) => {
        const peer = placement[o.peerStage!][i], st = streamOf(o, i), after = depsOf(o, i);
        const start = Math.max(tl.readyTime(dev, st, after), tl.readyTime(peer, st, after));
        const duration = sendRecvTime(o.bytes!, cluster.linkBetween(dev, peer));
        tl.schedule({ device: peer, stream: st, name: `${name} (recv)`, kind: 'comm', duration, notBefore: start, after, args: { ...args, bytes: o.bytes! } });
        return tl.schedule({ device: dev, stream: st, name, kind: 'comm', duration, notBefore: start, after, args: { ...args, bytes: o.bytes! } });
      });
    } else {
      const start = readyAt(o);
      evs = placement[o.stage].map((dev, i) => tl.schedule({ device: dev, stream: o.stream as StreamName, name, kind: 'comm', duration: o.dur as number, notBefore: start, after: depsOf(o, i), args }));
    }
    events.set(o.id, evs);
  };

  let issued = 0;
  const total = programs.reduce((a, p) => a + p.length, 0);
  while (issued < total) {
    let best = -1, bestT = Infinity;
    for (let s = 0; s < programs.length; s++) {
      const o = programs[s][ptr[s]];
      if (!o || !o.deps.every((d) => events.has(d))) continue;
      const t = readyAt(o);
      if (t < bestT) { bestT = t; best = s; }
    }
    if (best < 0) {
      const heads = programs.map((p, s) => p[ptr[s]]).filter(Boolean).map((o) => `${o!.id} waits for ${o!.deps.filter((d) => !events.has(d)).join(', ')}`);
      throw new Error(`overlap executor: deadlock, ${heads.join('; ')}`);
    }
    issue(programs[best][ptr[best]++]);
    issued++;
  }
  return { events, issued };
}
