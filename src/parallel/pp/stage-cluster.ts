// A pipeline stage's view of the cluster: local rank i of the stage is global device `devices[i]`.
// A stage of a PP × (TP·CP·DP) run is an ordinary lockstep ParallelModel over its own tp·cp·dp
// devices (Megatron rank order puts pp slowest, so a stage is a contiguous block of ranks); the view
// lets that ParallelModel, its collectives (EP all-to-all, TP mappings, DP grad sync) and its clock
// address local ranks 0..n−1 while every event, memory allocation and ledger record lands on the
// real global device of the shared cluster (one timeline, one comm ledger, one HBM ledger per device).
//
// Only what the lockstep executors use is mapped: device(), nodeOf(), size, spec, hosts, the
// timeline (readyTime / streamFree / schedule by device) and the comm ledger (src/dst).
import type { Cluster } from '../../device/cluster.ts';
import type { CommLedger, CommRecord } from '../../device/comm-ledger.ts';
import type { SimDevice } from '../../device/device.ts';
import { ExpertCollectives } from '../../device/expert-collectives.ts';
import type { ProcessGroup } from '../../device/groups.ts';
import type { LinkSpec } from '../../device/specs.ts';
import type { ScheduleRequest, SimEvent, StreamName, Timeline } from '../../device/timeline.ts';
import type { GapFiller } from './gap-fill.ts';

/**
 * The global devices of `ranks` seen as a cluster of ranks.length devices (local rank i = ranks[i]).
 * With a `filler` (overlap mode) the collectives issued inside an F/B pair are recorded and placed by
 * the pair's list scheduler (gap-fill.ts); elsewhere they are scheduled as usual.
 */
export function stageCluster(cluster: Cluster, ranks: readonly number[], filler: GapFiller | null = null): Cluster {
  const devices: SimDevice[] = ranks.map((r) => cluster.device(r));
  const g = (i: number): number => {
    const r = ranks[i];
    if (r === undefined) throw new Error(`stage rank ${i} is outside the stage of ${ranks.length} devices`);
    return r;
  };
  const tl = cluster.timeline;
  const timeline = {
    get events() { return tl.events; },
    get makespan() { return tl.makespan; },
    streamFree: (d: number, s: StreamName) => tl.streamFree(g(d), s),
    readyTime: (d: number, s: StreamName, after: readonly SimEvent[] = [], notBefore = 0) =>
      (filler?.recording ? 0 : tl.readyTime(g(d), s, after, notBefore)),   // recording a pair: gap-fill.ts places it later
    schedule: (r: ScheduleRequest) => (filler ? filler.place({ ...r, device: g(r.device) }) : tl.schedule({ ...r, device: g(r.device) })),
  } as unknown as Timeline;
  const led = cluster.commLedger;
  const commLedger = {
    get records() { return led.records; },
    add: (r: CommRecord) => led.add({ ...r, src: g(r.src), dst: g(r.dst) }),
    total: (f?: Parameters<CommLedger['total']>[0]) => led.total(f),
    summary: () => led.summary(),
  } as unknown as CommLedger;
  const view = {
    spec: cluster.spec, nodes: cluster.nodes, devicesPerNode: cluster.devicesPerNode, devices, hosts: cluster.hosts,
    timeline, commLedger,
    get size() { return devices.length; },
    device: (i: number): SimDevice => devices[i] ?? (() => { throw new Error(`rank ${i} is outside the stage of ${devices.length} devices`); })(),
    nodeOf: (i: number): number => cluster.nodeOf(g(i)),
    linkBetween: (a: number, b: number): LinkSpec => cluster.linkBetween(g(a), g(b)),
    group: (kind: string, rs: readonly number[]): ProcessGroup => { rs.forEach(g); return { kind, ranks: [...rs] }; },
    world: (): ProcessGroup => ({ kind: 'world', ranks: devices.map((_, i) => i) }),
    global: ranks,
  } as Record<string, unknown>;
  view.comm = new ExpertCollectives(view as unknown as Cluster);
  return view as unknown as Cluster;
}
