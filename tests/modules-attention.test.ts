// GQA/MHA and MLA attention: forward against a per-head reference written here from the
// formulas, hand-written backward against tf.grads, saved names.
import { forEachBackend, tf, assert, assertClose } from './support/backends.ts';
import { ParamStore } from '../src/model/module.ts';
import { SavedActivations } from '../src/model/saved.ts';
import { resolveConfig, type ModelConfig } from '../src/model/config.ts';
import { GQAttention } from '../src/model/attention-gqa.ts';
import { MLAttention } from '../src/model/attention-mla.ts';
import { applyRope } from '../src/model/rope.ts';
import { defaultContext } from '../src/model/module.ts';
import { gradCheck, assertGrads, randn } from './model-gradcheck.ts';

const init = (shape: number[], _r: string, seed: number) => tf.randomNormal(shape, 0, 0.3, 'float32', seed);
const B = 2, S = 5, H = 16;

function gqaCfg(kv: number): ModelConfig {
  return resolveConfig('tiny', { attention: 'gqa', hiddenSize: H, numHeads: 4, numKvHeads: kv, headDim: 6, numLayers: 2, numDenseLayers: 2 });
}
function mlaCfg(qLora: number | null): ModelConfig {
  return resolveConfig('tiny', { hiddenSize: H, numHeads: 2, numLayers: 2, numDenseLayers: 2,
    mla: { qLoraRank: qLora, kvLoraRank: 6, qkNopeHeadDim: 4, qkRopeHeadDim: 4, vHeadDim: 3 } });
}

/** softmax(q kᵀ/√d + causal) v for one head: q,k [B,S,d], v [B,S,dv]. */
function refHead(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor): tf.Tensor {
  const d = q.shape[2]!;
  const mask = tf.linalg.bandPart(tf.ones([S, S]), -1, 0);
  const sc = tf.add(tf.div(tf.matMul(q, k, false, true), Math.sqrt(d)), tf.mul(tf.sub(1, mask), -1e9));
  return tf.matMul(tf.softmax(sc), v);
}
const headSlice = (x: tf.Tensor, i: number, d: number) => tf.slice(x, [0, 0, i * d], [-1, -1, d]);

function refGQA(cfg: ModelConfig, p: ParamStore, x: tf.Tensor): tf.Tensor {
  const a = cfg.numHeads, g = cfg.numKvHeads, d = cfg.headDim;
  const x2 = tf.reshape(x, [B * S, H]);
  const proj = (w: string, n: number) => tf.reshape(tf.matMul(x2, p.get(`a.${w}`)), [B, S, n * d]);
  const rope = (t: tf.Tensor, n: number) => tf.reshape(applyRope(tf.reshape(t, [B, S, n, d]), cfg.ropeTheta), [B, S, n * d]);
  const q = rope(proj('wq', a), a), k = rope(proj('wk', g), g), v = proj('wv', g);
  const heads = [];
  for (let i = 0; i < a; i++) { const j = Math.floor(i / (a / g)); heads.push(refHead(headSlice(q, i, d), headSlice(k, j, d), headSlice(v, j, d))); }
  return tf.reshape(tf.matMul(tf.reshape(tf.concat(heads, -1), [B * S, a * d]), p.get('a.wo')), [B, S, H]);
}

function rms(x: tf.Tensor, g: tf.Tensor, eps: number) {
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), eps))), g);
}

function refMLA(cfg: ModelConfig, p: ParamStore, x: tf.Tensor): tf.Tensor {
  const m = cfg.mla!, a = cfg.numHeads, dn = m.qkNopeHeadDim, dr = m.qkRopeHeadDim, dv = m.vHeadDim;
  const x2 = tf.reshape(x, [B * S, H]);
  const q = m.qLoraRank === null ? tf.matMul(x2, p.get('a.wq'))
    : tf.matMul(rms(tf.matMul(x2, p.get('a.wqA')), p.get('a.qANorm.weight'), cfg.normEps), p.get('a.wqB'));
  const q3 = tf.reshape(q, [B, S, a * (dn + dr)]);
  const kvA = tf.matMul(x2, p.get('a.wkvA'));
  const latent = tf.slice(kvA, [0, 0], [-1, m.kvLoraRank]);
  const kRope = applyRope(tf.reshape(tf.slice(kvA, [0, m.kvLoraRank], [-1, dr]), [B, S, 1, dr]), cfg.ropeTheta);
  const kv = tf.reshape(tf.matMul(rms(latent, p.get('a.kvANorm.weight'), cfg.normEps), p.get('a.wkvB')), [B, S, a * (dn + dv)]);
  const heads = [];
  for (let i = 0; i < a; i++) {
    const qi = headSlice(q3, i, dn + dr);
    const qNope = tf.slice(qi, [0, 0, 0], [-1, -1, dn]);
    const qRope = tf.reshape(applyRope(tf.reshape(tf.slice(qi, [0, 0, dn], [-1, -1, dr]), [B, S, 1, dr]), cfg.ropeTheta), [B, S, dr]);
    const kvi = headSlice(kv, i, dn + dv);
    const k = tf.concat([tf.slice(kvi, [0, 0, 0], [-1, -1, dn]), tf.reshape(kRope, [B, S, dr])], -1);
    heads.push(refHead(tf.concat([qNope, qRope], -1), k, tf.slice(kvi, [0, 0, dn], [-1, -1, dv])));
  }
  return tf.reshape(tf.matMul(tf.reshape(tf.concat(heads, -1), [B * S, a * dv]), p.get('a.wo')), [B, S, H]);
}

forEachBackend('modules-attention', (test) => {
  for (const kv of [4, 2]) {
    test(`GQA (heads 4, kv heads ${kv}): forward = per-head reference, backward = autograd`, () => {
      const cfg = gqaCfg(kv), p = new ParamStore(), att = new GQAttention(cfg, p, 'a', init);
      const x = randn([B, S, H], 11);
      const rec = new SavedActivations('t');
      const y = tf.tidy(() => att.forward(x, rec, defaultContext()));
      const ref = tf.tidy(() => refGQA(cfg, p, x));
      assertClose(y.dataSync(), ref.dataSync(), 1e-5, 'gqa forward');
      assert.equal(rec.list().map((i) => i.name), [...att.savedNames]);
      rec.dispose(); tf.dispose([y, ref]);
      assertGrads(gradCheck(p, x, (xx, r) => att.forward(xx, r, defaultContext()), (dy, r, g) => att.backward(dy, r, g, defaultContext())), 1e-4, 'gqa');
      x.dispose(); p.dispose();
    });
  }
  for (const qLora of [8, null]) {
    test(`MLA (q-LoRA ${qLora}): forward = per-head reference, backward = autograd`, () => {
      const cfg = mlaCfg(qLora), p = new ParamStore(), att = new MLAttention(cfg, p, 'a', init);
      const x = randn([B, S, H], 12);
      const rec = new SavedActivations('t');
      const y = tf.tidy(() => att.forward(x, rec, defaultContext()));
      const ref = tf.tidy(() => refMLA(cfg, p, x));
      assertClose(y.dataSync(), ref.dataSync(), 1e-5, 'mla forward');
      assert.equal(rec.list().map((i) => i.name).sort(), [...att.savedNames].sort());
      assert.equal(rec.info('mla.kvUp').shape, [B * S, 2 * (4 + 3)]);
      rec.dispose(); tf.dispose([y, ref]);
      assertGrads(gradCheck(p, x, (xx, r) => att.forward(xx, r, defaultContext()), (dy, r, g) => att.backward(dy, r, g, defaultContext())), 1e-4, 'mla');
      x.dispose(); p.dispose();
    });
  }
});
