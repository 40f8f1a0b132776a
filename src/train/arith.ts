// Synthetic arithmetic: lines `a+b=c\n` / `a*b=c\n` of n-digit operands. The set of all operand
// pairs is split once, by a seeded hash of (op, a, b), into train and held-out validation problems,
// so validation exact-match measures generalisation to pairs never seen in training.
import seedrandom from 'seedrandom';

export type ArithOp = '+' | '*';

export interface ArithSpec {
  ops: ArithOp[];
  digits: number;
  /** Fraction of problems held out for validation. */
  valFraction: number;
}

export interface ArithProblem { prompt: string; answer: string } // '12+34=' and '46\n'

export const formatProblem = (a: number, op: ArithOp, b: number) =>
  ({ prompt: `${a}${op}${b}=`, answer: `${op === '+' ? a + b : a * b}\n` });

/** n-digit operands: [10^(n-1), 10^n), and [0, 10) for n = 1. */
function operandRange(digits: number): [number, number] {
  return digits === 1 ? [0, 10] : [10 ** (digits - 1), 10 ** digits];
}

/** FNV-1a hash of a string mapped to [0, 1): a seed-stable split that needs no stored list. */
function unitHash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) { h ^= s.charCodeAt(i); h = Math.imul(h, 0x01000193) >>> 0; }
  return h / 2 ** 32;
}

export const isHeldOut = (spec: ArithSpec, a: number, op: ArithOp, b: number) =>
  unitHash(`split|${op}|${a}|${b}`) < spec.valFraction;

/** All problems of one split when the space is small (≤ 2 digits), else `maxCount` sampled ones. */
export function arithProblems(spec: ArithSpec, split: 'train' | 'val', seed: number, maxCount = 20000): ArithProblem[] {
  const [lo, hi] = operandRange(spec.digits);
  const out: ArithProblem[] = [];
  const want = (a: number, op: ArithOp, b: number) => isHeldOut(spec, a, op, b) === (split === 'val');
  if ((hi - lo) ** 2 * spec.ops.length <= 4 * maxCount) {
    for (const op of spec.ops) for (let a = lo; a < hi; a++) for (let b = lo; b < hi; b++) if (want(a, op, b)) out.push(formatProblem(a, op, b));
    return out;
  }
  const rng = seedrandom(`arith-${split}-${seed}`);
  for (let tries = 0; out.length < maxCount && tries < maxCount * 50; tries++) {
    const op = spec.ops[Math.floor(rng() * spec.ops.length)];
    const a = lo + Math.floor(rng() * (hi - lo)), b = lo + Math.floor(rng() * (hi - lo));
    if (want(a, op, b)) out.push(formatProblem(a, op, b));
  }
  return out;
}

/** A text stream of `count` problems drawn (with replacement) from `problems`, seeded. */
export function arithStream(problems: ArithProblem[], count: number, seed: string): string {
  const rng = seedrandom(seed);
  const lines: string[] = [];
  for (let i = 0; i < count; i++) { const p = problems[Math.floor(rng() * problems.length)]; lines.push(p.prompt + p.answer); }
  return lines.join('');
}

/** Parse 'arith', 'arith:add', 'arith:mul', 'arith:addmul', optionally ':N' digits (default 2). */
export function parseArithSpec(spec: string): ArithSpec | string {
  const m = /^arith(?::(add|mul|addmul))?(?::(\d+))?$/.exec(spec);
  if (!m) return `--data arith must look like arith[:add|mul|addmul][:DIGITS] (got '${spec}')`;
  const ops: ArithOp[] = m[1] === 'add' ? ['+'] : m[1] === 'mul' ? ['*'] : ['+', '*'];
  const digits = m[2] ? Number(m[2]) : 2;
  if (digits < 1 || digits > 6) return `arith digits must be in [1, 6] (got ${digits})`;
  return { ops, digits, valFraction: 0.1 };
}
