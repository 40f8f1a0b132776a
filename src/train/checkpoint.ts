// Checkpoints: one directory, written as a whole (temporary directory + rename) and verified by a
// SHA-256 manifest on load. Nothing is modified until every file has been read and checked.
//
//   <dir>/model.safetensors      weights (+ model buffers such as expert biases), F32
//   <dir>/optimizer.safetensors  AdamW moments 'm.<param>', 'v.<param>'; metadata {t}
//   <dir>/config.json            Hugging Face field names where they exist, plus the full ultramoe config
//   <dir>/trainer.json           step, data position (sampler RNG state), train config, run spec, metrics so far
//   <dir>/tokenizer.json
//   <dir>/manifest.json          {format, files: {name: {sha256, bytes}}}
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { tf } from '../backend/tf.ts';
import type { ModelConfig } from '../model/config.ts';
import { decodeSafetensors, encodeSafetensors, type HostTensor } from './safetensors.ts';
import { tokenizerFromJSON, type Tokenizer, type TokenizerJSON } from './tokenizer.ts';
import type { Trainer, TrainConfig, TrainerState } from './trainer.ts';

export const CHECKPOINT_FORMAT = 'ultramoe-checkpoint/1';
const FILES = ['model.safetensors', 'optimizer.safetensors', 'config.json', 'trainer.json', 'tokenizer.json'];

/** What produced the run: enough to rebuild the dataset and model on resume. */
export interface RunSpec { preset: string; data: string; tokenizer: string; backend: string; model: 'moe' | 'toy' }

export interface LoadedCheckpoint {
  dir: string;
  modelConfig: ModelConfig;
  train: TrainConfig;
  run: RunSpec;
  trainer: TrainerState;
  tokenizer: Tokenizer;
  weights: Map<string, HostTensor>;
  optimizer: { t: number; tensors: Map<string, HostTensor> };
}

/** config.json in Hugging Face (DeepSeek-V3 style) field names, with the full config under "ultramoe". */
export function hfConfig(c: ModelConfig): Record<string, unknown> {
  return {
    architectures: ['MoEGPT'], model_type: 'ultramoe', torch_dtype: 'float32',
    vocab_size: c.vocabSize, hidden_size: c.hiddenSize, num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads, num_key_value_heads: c.numKvHeads, head_dim: c.headDim,
    intermediate_size: c.denseIntermediateSize, first_k_dense_replace: c.numDenseLayers,
    n_routed_experts: c.moe.numExperts, num_experts_per_tok: c.moe.topk, moe_intermediate_size: c.moe.expertHiddenSize,
    n_shared_experts: c.moe.numSharedExperts, scoring_func: c.moe.scoreFunction,
    routed_scaling_factor: c.moe.topkScalingFactor, n_group: c.moe.numGroups, topk_group: c.moe.groupTopk,
    q_lora_rank: c.mla?.qLoraRank ?? null, kv_lora_rank: c.mla?.kvLoraRank ?? null,
    qk_nope_head_dim: c.mla?.qkNopeHeadDim ?? null, qk_rope_head_dim: c.mla?.qkRopeHeadDim ?? null, v_head_dim: c.mla?.vHeadDim ?? null,
    rope_theta: c.ropeTheta, max_position_embeddings: c.maxSeqLen, rms_norm_eps: c.normEps,
    tie_word_embeddings: c.tieEmbeddings, num_nextn_predict_layers: c.numMtpLayers,
    ultramoe: c,
  };
}

/** Host-side model state outside ParamStore: each MoE layer's aux-loss-free `expertBias` (a
 *  Float32Array buffer on src/model/moe's MoELayer), by name 'moe.<i>.expertBias'. */
function hostBuffers(model: Trainer['model']): Map<string, { get(): Float32Array; set(a: Float32Array): void }> {
  const out = new Map<string, { get(): Float32Array; set(a: Float32Array): void }>();
  model.moeLayers().forEach((layer, i) => {
    const l = layer as { expertBias?: unknown };
    if (l.expertBias instanceof Float32Array) out.set(`moe.${i}.expertBias`, { get: () => l.expertBias as Float32Array, set: (a) => { l.expertBias = a; } });
  });
  return out;
}

const sha256 = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');

async function hostTensors(m: Map<string, tf.Tensor>): Promise<Map<string, HostTensor>> {
  const out = new Map<string, HostTensor>();
  for (const [n, t] of m) out.set(n, { dtype: t.dtype === 'int32' ? 'I32' : 'F32', shape: t.shape, data: (await t.data()) as Float32Array | Int32Array });
  return out;
}

/** Write the trainer's full state to `dir` atomically (readers see the old or the new checkpoint). */
export async function saveCheckpoint(dir: string, trainer: Trainer, modelConfig: ModelConfig, run: RunSpec): Promise<void> {
  trainer.syncForCheckpoint(); // a parallel run gathers its shards into the host model and optimizer first
  const weights = new Map<string, tf.Tensor>(trainer.model.params.vars);
  for (const [n, b] of trainer.model.buffers?.() ?? []) weights.set(`buffer.${n}`, b);
  const host = await hostTensors(weights);
  for (const [n, b] of hostBuffers(trainer.model)) host.set(`buffer.${n}`, { dtype: 'F32', shape: [b.get().length], data: Float32Array.from(b.get()) });
  const files: Record<string, Uint8Array | string> = {
    'model.safetensors': encodeSafetensors(host, { format: 'pt', producer: 'ultramoe' }),
    'optimizer.safetensors': encodeSafetensors(await hostTensors(trainer.opt.stateTensors()), { t: String(trainer.opt.t) }),
    'config.json': JSON.stringify(hfConfig(modelConfig), null, 1),
    'trainer.json': JSON.stringify({ ...trainer.state(), train: trainer.cfg, run }),
    'tokenizer.json': JSON.stringify(trainer.data.tokenizer.toJSON()),
  };
  const manifest = { format: CHECKPOINT_FORMAT, step: trainer.step, files: {} as Record<string, { sha256: string; bytes: number }> };
  for (const [n, b] of Object.entries(files)) manifest.files[n] = { sha256: sha256(b), bytes: typeof b === 'string' ? Buffer.byteLength(b) : b.length };

  mkdirSync(dirname(dir), { recursive: true });
  const tmp = join(dirname(dir), `.${basename(dir)}.tmp-${process.pid}-${Date.now()}`);
  const old = join(dirname(dir), `.${basename(dir)}.old-${process.pid}-${Date.now()}`);
  try {
    mkdirSync(tmp);
    for (const [n, b] of Object.entries(files)) writeFileSync(join(tmp, n), b);
    writeFileSync(join(tmp, 'manifest.json'), JSON.stringify(manifest, null, 1));
    if (existsSync(dir)) renameSync(dir, old);
    renameSync(tmp, dir);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    if (existsSync(old) && !existsSync(dir)) renameSync(old, dir);
    throw e;
  }
  rmSync(old, { recursive: true, force: true });
}

export class CheckpointError extends Error {}

/** Read and verify a checkpoint (a run directory with checkpoint/ inside is accepted too). */
export function loadCheckpoint(path: string): LoadedCheckpoint {
  const dir = existsSync(join(path, 'manifest.json')) ? path : join(path, 'checkpoint');
  const manifestPath = join(dir, 'manifest.json');
  if (!existsSync(manifestPath)) throw new CheckpointError(`no checkpoint at '${path}' (missing ${manifestPath})`);
  let manifest: { format: string; files: Record<string, { sha256: string; bytes: number }> };
  try { manifest = JSON.parse(readFileSync(manifestPath, 'utf8')); } catch { throw new CheckpointError(`corrupt checkpoint: ${manifestPath} is not valid JSON`); }
  if (manifest.format !== CHECKPOINT_FORMAT) throw new CheckpointError(`${manifestPath}: unknown format '${manifest.format}' (want ${CHECKPOINT_FORMAT})`);
  const bytes: Record<string, Buffer> = {};
  for (const n of FILES) {
    const p = join(dir, n), want = manifest.files?.[n];
    if (!want) throw new CheckpointError(`corrupt checkpoint: ${manifestPath} does not list ${n}`);
    if (!existsSync(p)) throw new CheckpointError(`corrupt checkpoint: missing file ${p}`);
    const b = readFileSync(p);
    if (b.length !== want.bytes || sha256(b) !== want.sha256)
      throw new CheckpointError(`corrupt checkpoint: ${p} does not match its SHA-256 in manifest.json (${b.length} bytes, expected ${want.bytes})`);
    bytes[n] = b;
  }
  const json = (n: string) => JSON.parse(bytes[n].toString('utf8'));
  const trainerJson = json('trainer.json') as TrainerState & { train: TrainConfig; run: RunSpec };
  const opt = decodeSafetensors(bytes['optimizer.safetensors'], join(dir, 'optimizer.safetensors'));
  return {
    dir,
    modelConfig: (json('config.json') as { ultramoe: ModelConfig }).ultramoe,
    train: trainerJson.train,
    run: trainerJson.run,
    trainer: { step: trainerJson.step, sampler: trainerJson.sampler, rows: trainerJson.rows, loads: trainerJson.loads },
    tokenizer: tokenizerFromJSON(json('tokenizer.json') as TokenizerJSON),
    weights: decodeSafetensors(bytes['model.safetensors'], join(dir, 'model.safetensors')).tensors,
    optimizer: { t: Number(opt.metadata.t ?? 0), tensors: opt.tensors },
  };
}

/** Differences between two configs as 'path: a != b' lines (empty when equal). */
export function configDiff(a: unknown, b: unknown, path = ''): string[] {
  if (typeof a === 'object' && a !== null && typeof b === 'object' && b !== null && !Array.isArray(a)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    return [...keys].flatMap((k) => configDiff((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], path ? `${path}.${k}` : k));
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [`${path}: checkpoint has ${JSON.stringify(a)}, requested ${JSON.stringify(b)}`];
}

/** Load weights, buffers, optimizer moments and trainer state into `trainer`. Shapes and names are
 *  all checked before the first assignment, so a mismatch leaves the trainer untouched. */
export function applyCheckpoint(ck: LoadedCheckpoint, trainer: Trainer, modelConfig: ModelConfig): void {
  const problems = configDiff(ck.modelConfig, modelConfig);
  const file = join(ck.dir, 'model.safetensors');
  const targets = new Map<string, tf.Variable>(trainer.model.params.vars);
  for (const [n, b] of trainer.model.buffers?.() ?? []) targets.set(`buffer.${n}`, b);
  if (!problems.length) {
    for (const [n, v] of targets) {
      const w = ck.weights.get(n);
      if (!w) problems.push(`${file} has no tensor '${n}'`);
      else if (w.shape.join(',') !== v.shape.join(',')) problems.push(`${file}: '${n}' has shape [${w.shape}], the model has [${v.shape}]`);
    }
    const host = hostBuffers(trainer.model);
    for (const [n, b] of host) {
      const w = ck.weights.get(`buffer.${n}`);
      if (!w || w.data.length !== b.get().length) problems.push(`${file}: missing or mis-sized 'buffer.${n}'`);
    }
    for (const n of ck.weights.keys()) if (!targets.has(n) && !host.has(n.replace(/^buffer\./, ''))) problems.push(`${file} has an unknown tensor '${n}'`);
    for (const [n, v] of trainer.model.params.vars) for (const k of ['m', 'v']) {
      const t = ck.optimizer.tensors.get(`${k}.${n}`);
      if (!t || t.shape.join(',') !== v.shape.join(',')) problems.push(`${join(ck.dir, 'optimizer.safetensors')}: missing or mis-shaped '${k}.${n}'`);
    }
  }
  if (problems.length)
    throw new CheckpointError(`checkpoint ${join(ck.dir, 'config.json')} does not match the requested model (${problems.length} difference${problems.length > 1 ? 's' : ''}):\n  - ${problems.slice(0, 20).join('\n  - ')}`);
  for (const [n, v] of targets) { const w = ck.weights.get(n)!; tf.tidy(() => v.assign(tf.tensor(w.data, w.shape, v.dtype))); }
  for (const [n, b] of hostBuffers(trainer.model)) b.set(Float32Array.from(ck.weights.get(`buffer.${n}`)!.data));
  trainer.opt.loadState(ck.optimizer.t, new Map([...ck.optimizer.tensors].map(([n, t]) => [n, { shape: t.shape, data: t.data as Float32Array }])));
  trainer.restore(ck.trainer);
  trainer.engine?.scatterFromHost(trainer.opt); // parallel resume: every rank takes its shards
}
