// Rebuild a trained model (and its tokenizer and dataset) from a checkpoint directory, verified
// by its SHA-256 manifest: used by `ultramoe sample` and `ultramoe eval`.
import { initBackend, type BackendName } from '../backend/tf.ts';
import { resolveConfig, type ModelConfig } from '../model/config.ts';
import { applyCheckpoint, loadCheckpoint, type LoadedCheckpoint } from './checkpoint.ts';
import { loadDataset, type Dataset } from './data.ts';
import { createModel, type TrainableModel } from './model.ts';
import { Trainer } from './trainer.ts';

export interface Restored { ck: LoadedCheckpoint; cfg: ModelConfig; model: TrainableModel; data: Dataset; trainer: Trainer }

export async function restoreRun(dir: string, backend: BackendName, data?: string): Promise<Restored> {
  const ck = loadCheckpoint(dir);
  await initBackend(backend);
  const cfg = resolveConfig(ck.run.preset, ck.modelConfig);
  const ds = loadDataset(data ?? ck.run.data, ck.run.tokenizer, ck.train.seed, ck.tokenizer);
  const model = createModel(cfg, ck.train.seed);
  const trainer = new Trainer(model, ds, ck.train, 1, 1, cfg.moe.topk);
  applyCheckpoint(ck, trainer, cfg);
  return { ck, cfg, model, data: ds, trainer };
}
