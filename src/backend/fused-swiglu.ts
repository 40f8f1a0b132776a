// Fused SwiGLU element-wise work (the MoE experts, the shared expert, the dense MLP). With the
// sigmoid s = σ(gate) from tfjs's own Sigmoid kernel (XNNPACK, vectorised exp):
//   forward:  act = (gate·s)·up,  actP = act·p  (p [R, 1]: the routed experts' combine weight)
//   backward (dA = ∂L/∂act, or ∂L/∂actP's input gradient when p is given):
//             dAct = dA·p,  silu = gate·s,  dUp = dAct·silu,  dGate = (dAct·up)·(s + silu·(1 − s)),
//             dP = Σ_f dA·act  [R, 1]
// in float32 with the operation order of the tfjs formulation in src/model/moe/experts.ts (bit-equal
// except dP's row sum, ordered by 4 SIMD lanes). One kernel replaces 3–4 (forward) and 10–12
// (backward) tfjs kernels. Layouts: `gate`, `up` [R, F] (separate), or packed [gate | up] rows of
// h [R, 2F] (the dense MLP's fused fc1; then s = σ(h) [R, 2F] and dh [R, 2F]).
// wasm: SIMD when F % 4 = 0, else JS loops; cpu: JS loops. The forward has a stock-op gradient.
import { tf } from './tfjs.ts';
import { fusedKernels, hasKernel, runFused, type FusedSpec, type Inputs } from './fused-kernel.ts';
import { I32, V128, op, loop, at, hsum, simdModule, type FnDef } from './simd-asm.ts';

/** Forward without / with p (separate names: each saves exactly its inputs for the gradient), backward. */
export const SWIGLU = 'UltramoeSwiGLU', SWIGLU_P = 'UltramoeSwiGLUProb', SWIGLU_GRAD = 'UltramoeSwiGLUGrad';
interface Attrs { packed: boolean }

/** Row geometry: F columns; element strides of the gate/sig rows, up rows and output rows; up's column offset. */
interface Geo { R: number; F: number; packed: boolean; gS: number; uS: number; uOff: number }
function geometry(ins: Inputs, { packed }: Attrs): Geo {
  const gate = ins.gate!;
  const W = gate.shape[gate.shape.length - 1], R = gate.shape.reduce((a, b) => a * b, 1) / W;
  const F = packed ? W / 2 : W;
  return { R, F, packed, gS: W, uS: W, uOff: packed ? F : 0 };
}

// ---------------------------------------------------------------------------------------------
// wasm SIMD (byte offsets; gS/uS/dS byte strides of the gate+sig, up and dGate/dUp rows)
function forwardFn(withP: boolean): FnDef {
  const [gate, sig, up, act, actP, p, R, F, gS, uS] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  const [r, j, oG, oS, oU, oA, oAP, fb, pv, a] = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19];
  const row = (base: number, stride: number, out: number) => [...op.get(r), ...op.get(stride), ...op.imul, ...op.get(base), ...op.iadd, ...op.set(out)];
  const ld = (base: number) => [...at(base, j), ...op.vload];
  return {
    name: withP ? 'swiglu_p' : 'swiglu', params: Array(10).fill(I32), locals: [...Array(8).fill(I32), V128, V128],
    body: [
      ...op.get(F), ...op.i32(4), ...op.imul, ...op.set(fb),
      ...loop(r, op.i32(0), op.get(R), 1, [
        ...row(gate, gS, oG), ...row(sig, gS, oS), ...row(up, uS, oU), ...row(act, fb, oA), ...row(actP, fb, oAP),
        ...(withP ? [...op.get(r), ...op.i32(4), ...op.imul, ...op.get(p), ...op.iadd, ...op.fload, ...op.splat, ...op.set(pv)] : []),
        ...loop(j, op.i32(0), op.get(fb), 16, [
          ...ld(oG), ...ld(oS), ...op.vmul, ...ld(oU), ...op.vmul, ...op.set(a),
          ...at(oA, j), ...op.get(a), ...op.vstore,
          ...(withP ? [...at(oAP, j), ...op.get(a), ...op.get(pv), ...op.vmul, ...op.vstore] : []),
        ]),
      ]),
    ],
  };
}

function backwardFn(withP: boolean): FnDef {
  const [dA, gate, sig, up, p, dG, dU, dP, R, F, gS, uS, dS] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
  const [r, j, oDA, oG, oS, oU, oDG, oDU, fb] = [13, 14, 15, 16, 17, 18, 19, 20, 21];
  const [acc, pv, da, s, u, silu, dAct, one, tmp] = [22, 23, 24, 25, 26, 27, 28, 29, 30];
  const row = (base: number, stride: number, out: number) => [...op.get(r), ...op.get(stride), ...op.imul, ...op.get(base), ...op.iadd, ...op.set(out)];
  const ld = (base: number) => [...at(base, j), ...op.vload];
  return {
    name: withP ? 'swiglu_bwd_p' : 'swiglu_bwd', params: Array(13).fill(I32), locals: [...Array(9).fill(I32), ...Array(9).fill(V128)],
    body: [
      ...op.get(F), ...op.i32(4), ...op.imul, ...op.set(fb),
      ...op.f32(1), ...op.splat, ...op.set(one),
      ...loop(r, op.i32(0), op.get(R), 1, [
        ...row(dA, fb, oDA), ...row(gate, gS, oG), ...row(sig, gS, oS), ...row(up, uS, oU), ...row(dG, dS, oDG), ...row(dU, dS, oDU),
        ...(withP ? [...op.get(r), ...op.i32(4), ...op.imul, ...op.get(p), ...op.iadd, ...op.fload, ...op.splat, ...op.set(pv), ...op.vzero, ...op.set(acc)] : []),
        ...loop(j, op.i32(0), op.get(fb), 16, [
          ...ld(oDA), ...op.set(da), ...ld(oS), ...op.set(s), ...ld(oU), ...op.set(u),
          ...ld(oG), ...op.get(s), ...op.vmul, ...op.set(silu),
          ...(withP
            ? [...op.get(acc), ...op.get(da), ...op.get(silu), ...op.get(u), ...op.vmul, ...op.vmul, ...op.vadd, ...op.set(acc),
              ...op.get(da), ...op.get(pv), ...op.vmul, ...op.set(dAct)]
            : [...op.get(da), ...op.set(dAct)]),
          ...at(oDU, j), ...op.get(dAct), ...op.get(silu), ...op.vmul, ...op.vstore,
          ...at(oDG, j), ...op.get(dAct), ...op.get(u), ...op.vmul,
          ...op.get(s), ...op.get(silu), ...op.get(one), ...op.get(s), ...op.vsub, ...op.vmul, ...op.vadd, ...op.vmul, ...op.vstore,
        ]),
        ...(withP ? [...op.get(r), ...op.i32(4), ...op.imul, ...op.get(dP), ...op.iadd, ...op.get(acc), ...hsum(tmp), ...op.fstore] : []),
      ]),
    ],
  };
}

interface SwigluSimd {
  swiglu(...a: number[]): void; swiglu_p(...a: number[]): void;
  swiglu_bwd(...a: number[]): void; swiglu_bwd_p(...a: number[]): void;
}
const swigluSimd = simdModule<SwigluSimd>(() => [forwardFn(false), forwardFn(true), backwardFn(false), backwardFn(true)]);

// ---------------------------------------------------------------------------------------------
// Kernels
const fr = Math.fround;

const forwardSpec: FusedSpec<Attrs> = {
  name: SWIGLU,
  outShapes: (ins, a) => { const { R, F } = geometry(ins, a); return ins.p ? [[R, F], [R, F]] : [[R, F]]; },
  js: ({ gate, sig, up, p }, [act, actP], ins, a) => {
    const { R, F, gS, uS, uOff } = geometry(ins, a), U = up!;
    for (let r = 0; r < R; r++) {
      const pr = p ? p[r] : 0;
      for (let j = 0; j < F; j++) {
        const a = fr(fr(gate![r * gS + j] * sig![r * gS + j]) * U[r * uS + uOff + j]);
        act[r * F + j] = a;
        if (p) actP[r * F + j] = a * pr;
      }
    }
  },
  simd: (b, o, [act, actP], ins, a) => {
    const { R, F, gS, uS, uOff } = geometry(ins, a), k = swigluSimd(b);
    if (!k || F % 4 !== 0) return false;
    (ins.p ? k.swiglu_p : k.swiglu)(o.gate, o.sig, o.up + 4 * uOff, act, ins.p ? actP : 0, o.p, R, F, 4 * gS, 4 * uS);
    return true;
  },
};

const backwardSpec: FusedSpec<Attrs> = {
  name: SWIGLU_GRAD,
  outShapes: (ins, a) => {
    const { R, F, packed } = geometry(ins, a);
    return packed ? [[R, 2 * F]] : ins.p ? [[R, F], [R, F], [R, 1]] : [[R, F], [R, F]];
  },
  js: ({ dA, gate, sig, up, p }, outs, ins, a) => {
    const { R, F, gS, uS, uOff, packed } = geometry(ins, a), U = up!;
    const dG = outs[0], dU = packed ? outs[0] : outs[1], dP = p ? outs[2] : null;
    const dS = packed ? 2 * F : F, dUOff = packed ? F : 0;
    for (let r = 0; r < R; r++) {
      const pr = p ? p[r] : 1;
      let acc = 0;
      for (let j = 0; j < F; j++) {
        const da = dA![r * F + j], s = sig![r * gS + j], u = U[r * uS + uOff + j];
        const silu = fr(gate![r * gS + j] * s);
        if (p) acc = fr(acc + fr(da * fr(silu * u)));
        const dAct = p ? fr(da * pr) : da;
        dU[r * dS + dUOff + j] = dAct * silu;
        dG[r * dS + j] = fr(dAct * u) * fr(s + fr(silu * fr(1 - s)));
      }
      if (dP) dP[r] = acc;
    }
  },
  simd: (b, o, outs, ins, a) => {
    const { R, F, gS, uS, uOff, packed } = geometry(ins, a), k = swigluSimd(b);
    if (!k || F % 4 !== 0) return false;
    const dG = outs[0], dU = packed ? outs[0] + 4 * F : outs[1], dP = ins.p ? outs[2] : 0;
    (ins.p ? k.swiglu_bwd_p : k.swiglu_bwd)(o.dA, o.gate, o.sig, o.up + 4 * uOff, o.p, dG, dU, dP, R, F, 4 * gS, 4 * uS, 4 * (packed ? 2 * F : F));
    return true;
  },
};

export const swigluKernels = [...fusedKernels(forwardSpec), ...fusedKernels({ ...forwardSpec, name: SWIGLU_P }), ...fusedKernels(backwardSpec)];

// ---------------------------------------------------------------------------------------------
// Stock-op formulations (fallback without the kernels; the forward's gradient)
const halves = (h: tf.Tensor) => tf.split(h, 2, -1);

/** Stock-op gradient of act = (g·s)·u (+ actP = act·p) for the SWIGLU kernels. */
function forwardGrad(dys: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: unknown) {
  const [dAct, dActP] = Array.isArray(dys) ? dys : [dys];
  if ((attrs as Attrs).packed) { // gate = up = h, sig = σ(h) [R, 2F]
    const [h, sH] = saved;
    const [g, u] = halves(h), [s] = halves(sH);
    return {
      gate: () => tf.concat([tf.mul(tf.mul(dAct, s), u), tf.zerosLike(u)], -1),
      up: () => tf.concat([tf.zerosLike(g), tf.mul(tf.mul(dAct, g), s)], -1),
      sig: () => tf.concat([tf.mul(tf.mul(dAct, g), u), tf.zerosLike(u)], -1),
    };
  }
  const [g, s, u, p] = saved;
  const dA = p ? tf.add(dAct, tf.mul(dActP, p)) : dAct;
  const grads: Record<string, () => tf.Tensor> = {
    gate: () => tf.mul(tf.mul(dA, s), u), sig: () => tf.mul(tf.mul(dA, g), u), up: () => tf.mul(tf.mul(dA, g), s),
  };
  if (p) grads.p = () => tf.sum(tf.mul(dActP, tf.mul(tf.mul(g, s), u)), -1, true);
  return grads;
}
tf.registerGradient({ kernelName: SWIGLU, inputsToSave: ['gate', 'sig', 'up'], gradFunc: forwardGrad });
tf.registerGradient({ kernelName: SWIGLU_P, inputsToSave: ['gate', 'sig', 'up', 'p'], gradFunc: forwardGrad });

/** act = silu(gate)·up [R, F] and, with p [R, 1], actP = act·p. */
export function swiglu(gate: tf.Tensor, up: tf.Tensor, p?: tf.Tensor): { act: tf.Tensor; actP: tf.Tensor | null } {
  const sig = tf.sigmoid(gate);
  if (!hasKernel(SWIGLU)) {
    const [act, actP] = tf.tidy(() => { const a = tf.mul(tf.mul(gate, sig), up); return p ? [a, tf.mul(a, p)] : [a]; });
    sig.dispose();
    return { act, actP: actP ?? null };
  }
  const [act, actP] = runFused(p ? SWIGLU_P : SWIGLU, { gate, sig, up, p }, { packed: false });
  sig.dispose();
  return { act, actP: actP ?? null };
}

/** act = silu(gate)·up [R, F] from packed rows h = [gate | up] [R, 2F]. */
export function swigluPacked(h: tf.Tensor): tf.Tensor {
  const sig = tf.sigmoid(h);
  if (!hasKernel(SWIGLU)) {
    const act = tf.tidy(() => { const [g, u] = halves(h), [s] = halves(sig); return tf.mul(tf.mul(g, s), u); });
    sig.dispose();
    return act;
  }
  const [act] = runFused(SWIGLU, { gate: h, sig, up: h }, { packed: true });
  sig.dispose();
  return act;
}

/** Gradients of `swiglu` for dA = ∂L/∂act (or, with p, the gradient reaching act·p): dGate, dUp [R, F], dP [R, 1] (with p). */
export function swigluBackward(dA: tf.Tensor, gate: tf.Tensor, up: tf.Tensor, p?: tf.Tensor): { dGate: tf.Tensor; dUp: tf.Tensor; dP: tf.Tensor | null } {
  const sig = tf.sigmoid(gate);
  if (!hasKernel(SWIGLU_GRAD)) {
    const [dGate, dUp, dP] = tf.tidy(() => {
      const silu = tf.mul(gate, sig), dAct = p ? tf.mul(dA, p) : dA;
      const gu = [tf.mul(tf.mul(dAct, up), tf.add(sig, tf.mul(silu, tf.sub(1, sig)))), tf.mul(dAct, silu)];
      return p ? [...gu, tf.sum(tf.mul(dA, tf.mul(silu, up)), 1, true)] : gu;
    });
    sig.dispose();
    return { dGate, dUp, dP: dP ?? null };
  }
  const [dGate, dUp, dP] = runFused(SWIGLU_GRAD, { dA, gate, sig, up, p }, { packed: false });
  sig.dispose();
  return { dGate, dUp, dP: dP ?? null };
}

/** dh [R, 2F] = [dGate | dUp] of `swigluPacked` for dA = ∂L/∂act [R, F]. */
export function swigluPackedBackward(dA: tf.Tensor, h: tf.Tensor): tf.Tensor {
  const sig = tf.sigmoid(h);
  if (!hasKernel(SWIGLU_GRAD)) {
    const dh = tf.tidy(() => {
      const [g, u] = halves(h), [s] = halves(sig), silu = tf.mul(g, s);
      return tf.concat([tf.mul(tf.mul(dA, u), tf.add(s, tf.mul(silu, tf.sub(1, s)))), tf.mul(dA, silu)], -1);
    });
    sig.dispose();
    return dh;
  }
  const [dh] = runFused(SWIGLU_GRAD, { dA, gate: h, sig, up: h }, { packed: true });
  sig.dispose();
  return dh;
}
