// `ultramoe place`: solve an expert placement for measured or predicted loads and compare it with the
// static contiguous placement. See docs/placement.md.
import { readFileSync } from 'node:fs';
import { parse, UsageError } from '../args.ts';
import { staticPlacement } from '../../parallel/placement/greedy.ts';
import { solve, solverProblems, SOLVERS } from '../../parallel/placement/solve.ts';
import { meanLoads, parseTrace, TRACE_FORMAT } from '../../parallel/placement/trace.ts';
import {
  balance, loadProblems, PlacementError, specProblems, type PlacementSpec, type SolverName,
} from '../../parallel/placement/types.ts';

export const summary = 'solve a dynamic expert placement (greedy | eplb | ours) for per-expert loads';

const usage = 'ultramoe place --loads <file.json> --devices D [--nodes N] [--groups G] [--replicas R] [--solver greedy|eplb|ours] [--json]';
const help = `${usage}

  --loads     JSON file: [[load per expert] per layer], one row [load per expert], {"loads": [[...]]},
              or an expert-load trace (format '${TRACE_FORMAT}', loads averaged over its steps)
  --devices   number of EP devices D (each holds R/D expert slots)
  --nodes     number of nodes (default 1); devices are split evenly over nodes
  --groups    number of expert groups (default 1); hierarchical placement when groups % nodes == 0
  --replicas  total physical expert slots R per layer (default: number of experts, i.e. no redundancy)
  --solver    greedy (LPT, no replication) | eplb (deepseek-ai/EPLB port) | ours (EPLB + local search); default ours
  --json      print one JSON object as the last line

"before" is the static contiguous placement (device d holds experts [d*N/D, (d+1)*N/D)); when N is not
a multiple of D it is slot p -> expert p mod N over the R slots.`;

function readLoads(path: string): number[][] {
  let json: unknown;
  try { json = JSON.parse(readFileSync(path, 'utf8')); } catch (e) { throw new UsageError(`cannot read --loads ${path}: ${(e as Error).message}`); }
  if (Array.isArray(json) && json.every((v) => typeof v === 'number')) return [json as number[]];
  if (Array.isArray(json)) return json as number[][];
  const o = json as { loads?: unknown; format?: unknown };
  if (o && Array.isArray(o.loads)) return o.loads as number[][];
  if (o && o.format === TRACE_FORMAT) return meanLoads(parseTrace(json));
  throw new UsageError(`--loads ${path}: expected [[...]], [...], {"loads": [[...]]} or a '${TRACE_FORMAT}' trace`);
}

const fmt = (x: number) => (Number.isInteger(x) ? String(x) : x.toFixed(2));

export async function run(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parse(argv, {
      loads: { type: 'string' }, devices: { type: 'string' }, nodes: { type: 'string' }, groups: { type: 'string' },
      replicas: { type: 'string' }, solver: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    }, usage));
  } catch (e) { console.error((e as Error).message); return 2; }
  if (values.help) { console.log(help); return 0; }

  const problems: string[] = [];
  if (!values.loads) problems.push('--loads is required');
  if (!values.devices) problems.push('--devices is required');
  const int = (name: string, v: string | undefined, dflt: number) => {
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) problems.push(`--${name} must be a positive integer (got '${v}')`);
    return n;
  };
  const numDevices = int('devices', values.devices, 0), numNodes = int('nodes', values.nodes, 1), numGroups = int('groups', values.groups, 1);
  const solver = (values.solver ?? 'ours') as SolverName;
  let loads: number[][] = [];
  if (values.loads) {
    try { loads = readLoads(values.loads); } catch (e) { problems.push((e as Error).message); }
  }
  const numExperts = loads[0]?.length ?? 0;
  const numReplicas = int('replicas', values.replicas, numExperts);
  if (problems.length) { console.error(`ultramoe place:\n  - ${problems.join('\n  - ')}\nusage: ${usage}`); return 2; }

  const spec: PlacementSpec = { numExperts, numReplicas, numDevices, numNodes, numGroups };
  const bad = [...specProblems(spec), ...loadProblems(loads, numExperts), ...solverProblems(solver, spec)];
  if (bad.length) { console.error(`ultramoe place:\n  - ${[...new Set(bad)].join('\n  - ')}`); return 2; }

  let after;
  try { after = solve(solver, loads, spec); } catch (e) {
    if (e instanceof PlacementError) { console.error(`ultramoe place: ${e.message}`); return 2; }
    throw e;
  }
  const beforeSpec = numExperts % numDevices === 0 ? { ...spec, numReplicas: numExperts } : spec;
  const before = staticPlacement(loads, beforeSpec);

  const layers = after.layers.map((l, i) => ({
    layer: i,
    physicalToLogical: l.physicalToLogical, logicalCount: l.logicalCount, logicalToPhysical: l.logicalToPhysical,
    deviceLoads: l.deviceLoads,
    before: { deviceLoads: before.layers[i].deviceLoads, ...balance(before.layers[i].deviceLoads) },
    after: balance(l.deviceLoads),
  }));

  if (!values.json) {
    const S = after.slotsPerDevice, perNode = numDevices / numNodes;
    console.log(`solver ${solver} (${after.hierarchical ? 'hierarchical' : 'global'}): ${numExperts} experts, ${numReplicas} slots, ${numDevices} devices x ${S} slots, ${numNodes} node(s), ${numGroups} group(s)`);
    for (const l of layers) {
      console.log(`\nlayer ${l.layer}`);
      console.log(`  ${'device'.padEnd(7)}${'node'.padEnd(6)}${'experts (after)'.padEnd(Math.max(16, S * 5))}${'before'.padStart(10)}${'after'.padStart(10)}`);
      for (let d = 0; d < numDevices; d++) {
        const experts = l.physicalToLogical.slice(d * S, (d + 1) * S).join(' ');
        console.log(`  ${String(d).padEnd(7)}${String(Math.floor(d / perNode)).padEnd(6)}${experts.padEnd(Math.max(16, S * 5))}${fmt(l.before.deviceLoads[d] ?? 0).padStart(10)}${fmt(l.deviceLoads[d]).padStart(10)}`);
      }
      console.log(`  max/mean: before ${l.before.maxOverMean.toFixed(3)}  after ${l.after.maxOverMean.toFixed(3)}  (max ${fmt(l.before.max)} -> ${fmt(l.after.max)}, mean ${fmt(l.after.mean)})`);
      const replicated = l.logicalCount.map((c, e) => (c > 1 ? `${e}x${c}` : '')).filter(Boolean);
      if (replicated.length) console.log(`  replicated experts: ${replicated.join(' ')}`);
    }
  }
  if (values.json) {
    console.log(JSON.stringify({ solver, spec, hierarchical: after.hierarchical, slotsPerDevice: after.slotsPerDevice, maxCount: after.maxCount, layers }));
  }
  return 0;
}
