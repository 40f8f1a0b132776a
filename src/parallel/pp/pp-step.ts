// Step bookkeeping of PipelineParallelModel (pp-model.ts): the step objective from the last stage's
// CE and every stage's router statistics (the same weights as ParallelModel.forwardBackward), and
// the tied embedding's gradient summed between the first and last stage.
import { tf } from '../../backend/tf.ts';
import type { ForwardContext, RouterStats } from '../../model/module.ts';
import type { ParallelStepReport } from '../parallel-model.ts';
import type { Scales } from '../pm-phases.ts';
import type { PipelineParallelModel } from './pp-model.ts';

/**
 * The step report: ce[m][i] = CE of local rank i of the last stage for micro-batch m; ctxs[s][m][i]
 * the contexts of stage s (its layers' router statistics and aux losses). perRank / routerStats are
 * indexed by global device.
 */
export function stepLoss(pp: PipelineParallelModel, ce: number[][], ctxs: ForwardContext[][][], M: number, scales: Scales): ParallelStepReport {
  const L = pp.inner, W = pp.layout.world, last = pp.partition.chunks[pp.partition.chunks.length - 1].stage;
  const perRank = Array.from({ length: W }, (_, rank) => ({ rank, lmLoss: 0, aux: {} as Record<string, number> }));
  const routerStats: RouterStats[][] = Array.from({ length: W }, () => []);
  let loss = 0, lmLoss = 0, auxLoss = 0, zLoss = 0;
  const w = 1 / (L.tp * L.cp * L.dp * M);   // TP ranks share the CE; CP ranks hold equal parts of it
  for (let m = 0; m < M; m++) {
    pp.devices[last].forEach((d, i) => { perRank[d].lmLoss += ce[m][i] / M; loss += w * ce[m][i]; lmLoss += w * ce[m][i]; });
    pp.stages.forEach((pm, s) => pp.devices[s].forEach((d, i) => {
      const c = ctxs[s][m][i];
      routerStats[d].push(...(c.routerStats ?? []));
      for (const st of c.routerStats ?? []) for (const [k, v] of Object.entries(st.auxLosses)) {
        perRank[d].aux[k] = (perRank[d].aux[k] ?? 0) + v / M;
        const wa = pm.isGroupScoped(k) ? scales.groupAuxScale : scales.localAuxScale;
        loss += wa * v;
        if (k === 'z') zLoss += wa * v; else auxLoss += wa * v;
      }
    }));
  }
  return { loss, lmLoss, auxLoss, zLoss, perRank, routerStats };
}

/** Sum the tied embedding/head weight's gradient between device i of the first and of the last stage. */
export function syncTiedEmbedding(pp: PipelineParallelModel): void {
  const C = pp.partition.chunks.length, a = pp.partition.chunks[0].stage, z = pp.partition.chunks[C - 1].stage, name = 'embedding.weight';
  if (a === z) return;
  const A = pp.stages[a], Z = pp.stages[z];
  pp.devices[a].forEach((da, i) => {
    const ga = A.grads[i].get(name), gz = Z.grads[i].get(name);
    if (!ga || !gz) return;
    const res = pp.cluster.comm.allReduce(pp.cluster.group('embd', [da, pp.devices[z][i]]), [ga, gz], { label: `pp.tied ${name}` });
    A.grads[i].grads.set(name, res.outputs[0]); Z.grads[i].grads.set(name, res.outputs[1]);
    tf.dispose([ga, gz]);
  });
}
