// Checkpoints: safetensors layout per the spec, bit-exact resume (2N straight == N + resume N),
// corrupt and mismatched checkpoints refused with the file named, nothing overwritten on failure.
import { forEachBackend, tf, assert } from './support/backends.ts';
import { mkdtempSync, readFileSync, writeFileSync, readdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveConfig, type ModelConfig } from '../src/model/config.ts';
import { encodeSafetensors, decodeSafetensors } from '../src/train/safetensors.ts';
import { saveCheckpoint, loadCheckpoint, applyCheckpoint, type RunSpec } from '../src/train/checkpoint.ts';
import { Trainer, defaultTrainConfig } from '../src/train/trainer.ts';
import { loadDataset } from '../src/train/data.ts';
import { createModel } from '../src/train/model.ts';

const ds = loadDataset('text', 'byte', 1);
const small = (o = {}): ModelConfig => resolveConfig('tiny', { hiddenSize: 32, numLayers: 2, numHeads: 2, denseIntermediateSize: 64,
  moe: { numExperts: 16, topk: 4, expertHiddenSize: 16 }, mla: { qLoraRank: 16, kvLoraRank: 16, qkNopeHeadDim: 8, qkRopeHeadDim: 8, vHeadDim: 8 }, ...o });
const run: RunSpec = { preset: 'tiny', data: 'text', tokenizer: 'byte', backend: 'wasm', model: 'moe' };
const tcfg = defaultTrainConfig({ batch: 2, seqLen: 16, steps: 8, microBatches: 2, warmupSteps: 2 });

function makeTrainer(cfg: ModelConfig) {
  return new Trainer(createModel(cfg, 1), ds, tcfg, 1, 1, cfg.moe.topk);
}

forEachBackend('checkpoint', (test) => {
  test('safetensors: 8-byte LE header length, JSON header, raw LE data; round trip', () => {
    const buf = encodeSafetensors(new Map([
      ['b', { dtype: 'F32' as const, shape: [2], data: Float32Array.of(1.5, -2) }],
      ['a', { dtype: 'I32' as const, shape: [1, 2], data: Int32Array.of(7, -1) }],
    ]), { note: 'x' });
    const n = Number(new DataView(buf.buffer).getBigUint64(0, true));
    assert.is(n % 8, 0);
    const h = JSON.parse(new TextDecoder().decode(buf.subarray(8, 8 + n)));
    assert.equal(h.a, { dtype: 'I32', shape: [1, 2], data_offsets: [0, 8] });
    assert.equal(h.b, { dtype: 'F32', shape: [2], data_offsets: [8, 16] });
    assert.equal(h.__metadata__, { note: 'x' });
    assert.is(new DataView(buf.buffer).getFloat32(8 + n + 8, true), 1.5);
    const d = decodeSafetensors(buf);
    assert.equal(Array.from(d.tensors.get('b')!.data), [1.5, -2]);
    assert.equal(Array.from(d.tensors.get('a')!.data), [7, -1]);
  });

  for (const expertBias of [false, true]) test(`resume is bit-exact: 8 straight steps == 4 + checkpoint + 4 (expertBias ${expertBias})`, async () => {
    const cfg = small(expertBias ? { moe: { numExperts: 16, topk: 4, expertHiddenSize: 16, expertBias: true, biasUpdateRate: 0.05 } } : {});
    const straight = makeTrainer(cfg);
    for (let i = 0; i < 8; i++) straight.trainStep();
    const want = straight.rows.map((r) => r.loss);
    straight.dispose(); straight.model.dispose();

    const dir = join(mkdtempSync(join(tmpdir(), 'ultramoe-ck-')), 'checkpoint');
    const first = makeTrainer(cfg);
    for (let i = 0; i < 4; i++) first.trainStep();
    await saveCheckpoint(dir, first, cfg, run);
    first.dispose(); first.model.dispose();

    const ck = loadCheckpoint(dir);
    assert.is(ck.trainer.step, 4);
    const bias = ck.weights.get('buffer.moe.0.expertBias');
    assert.is(bias?.data.length, 16);
    assert.is(bias!.data.some((b) => b !== 0), expertBias, 'expert bias saved');
    const cj = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    assert.is(cj.hidden_size, 32); assert.is(cj.n_routed_experts, 16); assert.is(cj.num_experts_per_tok, 4); assert.is(cj.kv_lora_rank, 16);
    const resumed = new Trainer(createModel(cfg, 99), ds, tcfg, 1, 1, cfg.moe.topk); // different init: all state comes from the checkpoint
    applyCheckpoint(ck, resumed, cfg);
    for (let i = 0; i < 4; i++) resumed.trainStep();
    assert.equal(resumed.rows.map((r) => r.loss), want, 'loss sequence');
    resumed.dispose(); resumed.model.dispose();
  });

  test('a flipped byte is refused naming the file; a different config is refused; nothing overwritten', async () => {
    const cfg = small();
    const t = makeTrainer(cfg);
    t.trainStep();
    const dir = join(mkdtempSync(join(tmpdir(), 'ultramoe-ck-')), 'checkpoint');
    await saveCheckpoint(dir, t, cfg, run);
    const file = join(dir, 'model.safetensors');
    const orig = readFileSync(file);
    const bad = Buffer.from(orig); bad[bad.length - 5] ^= 0x10;
    writeFileSync(file, bad);
    assert.throws(() => loadCheckpoint(dir), (e: Error) => e.message.includes(file) && /SHA-256/.test(e.message));
    writeFileSync(file, orig);

    const other = small({ hiddenSize: 48 });
    const t2 = new Trainer(createModel(other, 1), ds, tcfg, 1, 1, 4);
    const before = Array.from(t2.model.params.get('embedding.weight').dataSync());
    assert.throws(() => applyCheckpoint(loadCheckpoint(dir), t2, other), (e: Error) => e.message.includes(join(dir, 'config.json')) && e.message.includes('hiddenSize'));
    assert.equal(Array.from(t2.model.params.get('embedding.weight').dataSync()), before, 'weights untouched');
    assert.is(t2.step, 0);

    // Saving over an existing checkpoint leaves exactly one complete directory, no temporaries.
    await saveCheckpoint(dir, t, cfg, run);
    assert.equal(readdirSync(join(dir, '..')), ['checkpoint']);
    assert.ok(existsSync(join(dir, 'manifest.json')));
    for (const x of [t, t2]) { x.dispose(); x.model.dispose(); }
    assert.ok(tf.memory().numTensors >= 0);
  });
}, ['wasm']);
