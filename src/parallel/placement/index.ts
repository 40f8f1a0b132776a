// Dynamic expert placement (planner half): pure functions and plain data on host arrays. See docs/placement.md.
export * from './types.ts';
export { balancedPacking, descendingOrder, eplbLayer, rebalanceExperts, rebalanceLayerHierarchical, replicateExperts, type Packing, type Replication } from './eplb.ts';
export { greedyLayer, greedyPlacement, staticLayer, staticPlacement } from './greedy.ts';
export { balanceGroupsToNodes, localSearch, oursLayer, oursPlacement, type LocalSearchOptions } from './local-search.ts';
export { solve, solveLayer, solverProblems, SOLVERS } from './solve.ts';
export { logicalLoads, mapToPhysical, selectReplica, tokensPerDevice, tokensPerPhysical } from './replica.ts';
export { gate, LoadTracker, type GateDecision, type LoadTrackerOptions } from './load-tracker.ts';
export { PlacementController, type ControllerOptions, type LayerDecision, type PlanningRound } from './controller.ts';
export { alignToPrevious, migrationPlan, type SlotMove } from './migration.ts';
export { meanLoads, parseTrace, rng, syntheticZipfTrace, TRACE_FORMAT, zipfShares, type ExpertLoadTrace, type ZipfTraceOptions } from './trace.ts';
