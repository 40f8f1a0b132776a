// One entry point over the solvers, by name, for the CLI, the controller and the benchmark.
import { eplbLayer } from './eplb.ts';
import { greedyLayer, staticLayer } from './greedy.ts';
import { oursLayer } from './local-search.ts';
import {
  assemble, loadProblems, PlacementError, specProblems, type LayerPlacement, type Placement, type PlacementSpec, type SolverName,
} from './types.ts';

export const SOLVERS: readonly SolverName[] = ['static', 'greedy', 'eplb', 'ours'];

/**
 * Solve one layer's placement for `loads` [N]. The spec must be valid (see `validate`). With `previous`
 * [R] (the placement in force) 'ours' also searches from it and trades up to `slack` (relative) of max
 * device load for fewer migrated slots; other solvers ignore both.
 */
export function solveLayer(
  solver: SolverName, loads: ArrayLike<number>, spec: PlacementSpec, previous?: readonly number[], slack?: number,
): LayerPlacement {
  switch (solver) {
    case 'static': return staticLayer(loads, spec);
    case 'greedy': return greedyLayer(loads, spec);
    case 'eplb': return eplbLayer(loads, spec);
    case 'ours': return oursLayer(loads, spec, { previous, slack });
  }
}

/** Every problem with running `solver` on `spec` (the greedy solver cannot use redundant slots). */
export function solverProblems(solver: string, spec: PlacementSpec): string[] {
  if (!SOLVERS.includes(solver as SolverName)) return [`unknown solver '${solver}' (one of ${SOLVERS.join(', ')})`];
  if (solver === 'greedy' && spec.numReplicas !== spec.numExperts) {
    return [`the greedy solver does not replicate: numReplicas (${spec.numReplicas}) must equal numExperts (${spec.numExperts})`];
  }
  return [];
}

/** Solve every layer of loads [L, N]; throws one PlacementError listing every input problem. */
export function solve(solver: SolverName, loads: ArrayLike<number>[], spec: PlacementSpec): Placement {
  const p = [...solverProblems(solver, spec), ...specProblems(spec)];
  if (!specProblems(spec).length) p.push(...loadProblems(loads, spec.numExperts));
  if (p.length) throw new PlacementError(p);
  return assemble(solver, spec, loads.map((w) => solveLayer(solver, w, spec)));
}
