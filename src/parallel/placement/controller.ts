// Dynamic expert placement controller (the planner half of MindSpeed's planner/executor pair): every step
// it takes the observed tokens per expert of every MoE layer; every `period` steps it solves a placement
// for each layer's EMA-predicted loads and adopts it when the gate passes. Its output is data: the new
// per-layer placement and the slot moves an executor must perform (weights + optimizer state).
import { gate, LoadTracker, type GateDecision } from './load-tracker.ts';
import { alignToPrevious, migrationPlan, type SlotMove } from './migration.ts';
import { solveLayer, solverProblems } from './solve.ts';
import { layerFromSlots, PlacementError, specProblems, type LayerPlacement, type PlacementSpec, type SolverName } from './types.ts';

export interface ControllerOptions {
  spec: PlacementSpec;
  numLayers: number;
  solver?: SolverName; // default 'greedy' (the paper's framework); 'eplb'/'ours' use redundant slots
  emaWeight?: number; // default 0.9
  period?: number; // steps between planning rounds; default 50 (`expert_placement_freq`)
  threshold?: number; // minimum CV improvement to re-place a layer; default 0.08
  initial?: LayerPlacement[]; // default: static contiguous placement
  migrationSlack?: number; // 'ours' only: accept this much (relative) more max load to migrate fewer slots; default off
}

export interface LayerDecision extends GateDecision {
  layer: number;
  moves: SlotMove[]; // empty unless replaced
}

export interface PlanningRound {
  step: number; // steps observed when the round ran
  layers: LayerDecision[];
}

export class PlacementController {
  readonly tracker: LoadTracker;
  readonly spec: PlacementSpec;
  readonly solver: SolverName;
  readonly period: number;
  readonly threshold: number;
  readonly migrationSlack: number | undefined;
  private current: LayerPlacement[];

  constructor(o: ControllerOptions) {
    const solver = o.solver ?? 'greedy', period = o.period ?? 50, threshold = o.threshold ?? 0.08;
    const p = [...specProblems(o.spec)];
    if (!p.length) p.push(...solverProblems(solver, o.spec));
    if (!Number.isInteger(period) || period <= 0) p.push(`period must be a positive integer (got ${period})`);
    if (!(threshold >= 0)) p.push(`threshold must be >= 0 (got ${threshold})`);
    if (o.migrationSlack !== undefined && !(o.migrationSlack >= 0)) p.push(`migrationSlack must be >= 0 (got ${o.migrationSlack})`);
    if (o.initial && o.initial.length !== o.numLayers) p.push(`initial has ${o.initial.length} layers, expected ${o.numLayers}`);
    if (p.length) throw new PlacementError(p);
    this.spec = o.spec; this.solver = solver; this.period = period; this.threshold = threshold;
    this.migrationSlack = o.migrationSlack;
    this.tracker = new LoadTracker({ numLayers: o.numLayers, numExperts: o.spec.numExperts, emaWeight: o.emaWeight });
    const uniform = new Array<number>(o.spec.numExperts).fill(1);
    this.current = o.initial ?? Array.from({ length: o.numLayers }, () => solveLayer('static', uniform, o.spec));
  }

  /** Current placement of every layer (deviceLoads refer to the loads it was last solved or re-scored for). */
  get placement(): readonly LayerPlacement[] { return this.current; }

  /**
   * Feed one step's tokens per expert [L][N]. Returns the planning round when this step closes a period,
   * else null. Adopted layers are already current when this returns; run their `moves` before the next step.
   */
  observe(tokensPerExpert: ArrayLike<number>[]): PlanningRound | null {
    if (tokensPerExpert.length !== this.tracker.numLayers) throw new Error(`observe: ${tokensPerExpert.length} layers, expected ${this.tracker.numLayers}`);
    tokensPerExpert.forEach((row, l) => this.tracker.record(l, row));
    const step = this.tracker.endStep();
    return step % this.period === 0 ? this.plan(step) : null;
  }

  private plan(step: number): PlanningRound {
    const { numDevices: D, numExperts: N } = this.spec;
    const layers: LayerDecision[] = [];
    for (let l = 0; l < this.current.length; l++) {
      const predicted = this.tracker.predicted(l);
      const previous = this.migrationSlack === undefined ? undefined : this.current[l].physicalToLogical;
      const candidate = solveLayer(this.solver, predicted, this.spec, previous, this.migrationSlack);
      const decision = gate(this.current[l], candidate, predicted, D, this.threshold);
      let moves: SlotMove[] = [];
      if (decision.replace) {
        const prev = this.current[l].physicalToLogical;
        const slots = alignToPrevious(prev, candidate.physicalToLogical, this.spec);
        moves = migrationPlan(prev, slots, this.spec);
        this.current[l] = layerFromSlots(slots, N, D, predicted);
      }
      layers.push({ layer: l, ...decision, moves });
    }
    return { step, layers };
  }
}
