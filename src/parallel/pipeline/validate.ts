// Schedule validator: the checks an executor relies on, as a list of problems (empty = valid).
//   1. every (mb, chunk) has exactly one F and one B on its rank (and one W iff split backward);
//   2. on a rank, F(mb, c) precedes B(mb, c), which precedes W(mb, c);
//   3. every send has exactly one matching recv on the peer and vice versa, a send follows the
//      compute that produces it, a recv precedes the compute that consumes it;
//   4. the cross-rank dependencies are satisfiable: the simulator (unit costs) finishes without deadlock.
import { type Action, type Schedule, stageOf, rankOfStage, chunkOfStage } from './schedule.ts';
import { simulateSchedule } from './simulate.ts';

export function validateSchedule(s: Schedule): string[] {
  const { pp, vpp, numMicroBatches: M } = s;
  const S = pp * vpp;
  const problems: string[] = [];
  if (s.ranks.length !== pp) return [`expected ${pp} rank lists, got ${s.ranks.length}`];
  const sends = new Map<string, number>();
  const recvs = new Map<string, number>();
  for (let r = 0; r < pp; r++) {
    const pos = new Map<string, number>();
    s.ranks[r].forEach((a, i) => {
      if (a.chunk < 0 || a.chunk >= vpp || a.microBatch < 0 || a.microBatch >= M) {
        problems.push(`rank ${r} action ${i}: (mb ${a.microBatch}, chunk ${a.chunk}) out of range`);
        return;
      }
      const key = a.kind === 'send' || a.kind === 'recv' ? `${a.kind}${a.dir}:${a.microBatch}:${a.chunk}` : `${a.kind}:${a.microBatch}:${a.chunk}`;
      if (pos.has(key)) problems.push(`rank ${r}: ${key} appears twice`);
      pos.set(key, i);
      if (a.kind === 'send' || a.kind === 'recv') {
        const st = stageOf(pp, r, a.chunk);
        // Global message id: (dir, mb, producer stage → consumer stage).
        const [from, to] = a.dir === 'fwd'
          ? (a.kind === 'send' ? [st, st + 1] : [st - 1, st])
          : (a.kind === 'send' ? [st, st - 1] : [st + 1, st]);
        if (to < 0 || to >= S || from < 0 || from >= S) { problems.push(`rank ${r}: ${key} has no peer stage`); return; }
        const expectPeer = rankOfStage(pp, a.kind === 'send' ? to : from);
        if (a.peer !== expectPeer) problems.push(`rank ${r}: ${key} peer ${a.peer}, expected ${expectPeer}`);
        const id = `${a.dir}:${a.microBatch}:${from}>${to}`;
        const map = a.kind === 'send' ? sends : recvs;
        map.set(id, (map.get(id) ?? 0) + 1);
      }
    });
    for (let c = 0; c < vpp; c++) for (let m = 0; m < M; m++) {
      const f = pos.get(`F:${m}:${c}`), b = pos.get(`B:${m}:${c}`), w = pos.get(`W:${m}:${c}`);
      if (f === undefined) problems.push(`rank ${r}: missing F(mb ${m}, chunk ${c})`);
      if (b === undefined) problems.push(`rank ${r}: missing B(mb ${m}, chunk ${c})`);
      if (f !== undefined && b !== undefined && f > b) problems.push(`rank ${r}: B(mb ${m}, chunk ${c}) before its F`);
      if (s.splitBackward && w === undefined) problems.push(`rank ${r}: missing W(mb ${m}, chunk ${c})`);
      if (!s.splitBackward && w !== undefined) problems.push(`rank ${r}: W(mb ${m}, chunk ${c}) without split backward`);
      if (w !== undefined && b !== undefined && w < b) problems.push(`rank ${r}: W(mb ${m}, chunk ${c}) before its B`);
      const order = (p2p: string, compute: string, after: boolean) => {
        const i = pos.get(p2p), j = pos.get(compute);
        if (i !== undefined && j !== undefined && (after ? i < j : i > j))
          problems.push(`rank ${r}: ${p2p} must come ${after ? 'after' : 'before'} ${compute}`);
      };
      order(`sendfwd:${m}:${c}`, `F:${m}:${c}`, true);
      order(`recvfwd:${m}:${c}`, `F:${m}:${c}`, false);
      order(`sendbwd:${m}:${c}`, `B:${m}:${c}`, true);
      order(`recvbwd:${m}:${c}`, `B:${m}:${c}`, false);
    }
  }
  for (const [id, n] of sends) if (n !== 1 || recvs.get(id) !== 1) problems.push(`message ${id}: ${n} send(s), ${recvs.get(id) ?? 0} recv(s)`);
  for (const [id, n] of recvs) if (!sends.has(id)) problems.push(`message ${id}: ${n} recv(s) without a send`);
  if (problems.length === 0) {
    const sim = simulateSchedule(s, { F: 1, B: 2, W: 1 });
    if (sim.deadlock) {
      const stuck = sim.deadlock.map((i, r) => (i < 0 ? null : `rank ${r} at ${describe(s.ranks[r][i])}`)).filter(Boolean);
      problems.push(`deadlock: ${stuck.join('; ')}`);
    }
  }
  return problems;
}

export function describe(a: Action): string {
  return a.kind === 'send' || a.kind === 'recv'
    ? `${a.kind}-${a.dir}(mb ${a.microBatch}, chunk ${a.chunk}, peer ${a.peer})`
    : `${a.kind}(mb ${a.microBatch}, chunk ${a.chunk})`;
}

/** Stage of a (rank, chunk) and back, re-exported for executors. */
export { stageOf, rankOfStage, chunkOfStage };
