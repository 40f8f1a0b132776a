// What selective recompute and swap support inside pipeline stages that run TP/DP/EP (stage-memory.ts),
// checked up front by the CLI (train/pipeline-flags.ts) and by PipelineParallelModel. Pure (no tfjs).
//
// Recomputed per device, without communication: a recipe reruns a local kernel on entries the device
// keeps (norm outputs and attention inputs, MLA latents/up-projections, attention core, expert fc1/fc3
// outputs and the SwiGLU activation, dense MLP and shared-expert tensors). Not supported:
//   - 'permute': rebuilding the received tokens/probabilities would rerun the EP dispatch all-to-all;
//   - 'router': the router recipe re-derives routing statistics the EP router reduces over its group;
//   - 'residual' / 'other': no selective recipe (as on one device).
// 'full' is supported: the stage's devices replay whole layers in lockstep, collectives included
// (stage-full-recompute.ts).
// --memory-budget chooses among these classes (and swap) per stage by measurement (stage-budget.ts).
// Swap moves any class's entries to host and back on the device's own host link: no restriction.
import { MODULE_CLASSES, type ModuleClass } from '../memory/descriptors.ts';

export const STAGE_RECOMPUTE_CLASSES: readonly ModuleClass[] = [
  'norm', 'mla_down_proj', 'mla_up_proj', 'qkv_linear', 'core_attn', 'attn_proj', 'expert_fc1', 'moe_act', 'mlp_fc1', 'mlp_act',
];

const WHY: Partial<Record<ModuleClass, string>> = {
  permute: 'its recompute would rerun the EP dispatch all-to-all',
  router: 'its recompute re-derives routing statistics the EP router reduces over its group',
  residual: 'the residual stream has no selective recipe',
  other: 'no selective recipe',
};

/** Every problem of a recompute/swap/budget request for stages with tp/dp/ep inside (empty: supported). */
export function stageMemoryProblems(recompute: string, swap: string, memoryBudget: number | undefined, where: string): string[] {
  const p: string[] = [];
  const supported = `supported with tp/dp/ep inside the stages: --recompute full or ${STAGE_RECOMPUTE_CLASSES.join(',')} (any subset), --swap <any classes>`;
  if (recompute !== 'none' && recompute !== 'full') {
    for (const c of recompute.split(',').map((x) => x.trim()).filter(Boolean)) {
      if (!(MODULE_CLASSES as readonly string[]).includes(c)) continue; // reported by the flag parser
      if (!STAGE_RECOMPUTE_CLASSES.includes(c as ModuleClass)) p.push(`${where}: --recompute ${c} is not executed with tp/dp/ep inside the pipeline stages (${WHY[c as ModuleClass] ?? 'not local'}); ${supported}`);
    }
  }
  void swap; void memoryBudget; // any swap classes; a budget is planned per stage (stage-budget.ts)
  return p;
}
