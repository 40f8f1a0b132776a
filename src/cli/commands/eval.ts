// `ultramoe eval`: validation loss of a checkpoint, and arithmetic exact match on held-out problems.
import { parse, UsageError } from '../args.ts';
import type { BackendName } from '../../backend/tf.ts';
import { arithExactMatch } from '../../train/generate.ts';
import { restoreRun } from '../../train/restore.ts';

export const summary = 'validation loss of a checkpoint and arithmetic exact-match accuracy';

const usage = 'ultramoe eval <checkpoint-or-run-dir> [--data text|arith[...]|<file>] [--batches N] [--problems N] [--backend wasm|cpu] [--json]';

export async function run(argv: string[]): Promise<number> {
  let a;
  try {
    a = parse(argv, {
      data: { type: 'string' }, batches: { type: 'string', default: '16' }, problems: { type: 'string', default: '500' },
      backend: { type: 'string', default: 'wasm' }, json: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h', default: false },
    }, usage);
  } catch (e) { if (e instanceof UsageError) { console.error(e.message); return 2; } throw e; }
  const v = a.values;
  if (v.help) { console.log(`usage: ${usage}`); return 0; }
  const problems: string[] = [];
  const batches = Number(v.batches), nProblems = Number(v.problems);
  if (a.positionals.length !== 1) problems.push('give exactly one checkpoint (or run) directory');
  if (!(Number.isInteger(batches) && batches > 0)) problems.push(`--batches must be a positive integer (got ${v.batches})`);
  if (!(Number.isInteger(nProblems) && nProblems >= 0)) problems.push(`--problems must be an integer >= 0 (got ${v.problems})`);
  if (!['wasm', 'cpu'].includes(v.backend)) problems.push(`--backend must be wasm or cpu (got ${v.backend})`);
  if (problems.length) { console.error(`ultramoe eval:\n  - ${problems.join('\n  - ')}\nusage: ${usage}`); return 2; }
  const r = await restoreRun(a.positionals[0], v.backend as BackendName, v.data);
  r.trainer.cfg.evalBatches = batches;
  const valLoss = r.trainer.evaluate();
  const em = r.data.valProblems && nProblems > 0
    ? arithExactMatch(r.model, r.data.tokenizer, r.data.valProblems.slice(0, nProblems), Math.min(r.cfg.maxSeqLen, r.ck.train.seqLen))
    : null;
  const result = { step: r.ck.trainer.step, data: v.data ?? r.ck.run.data, valLoss, uniformLoss: Math.log(r.cfg.vocabSize),
    exactMatch: em ? em.accuracy : null, problems: em ? em.total : 0, examples: em?.examples ?? [] };
  console.log(`step ${result.step}  ${result.data}: val loss ${valLoss.toFixed(4)} (uniform ${result.uniformLoss.toFixed(3)})` +
    (em ? `  exact match ${(100 * em.accuracy).toFixed(1)}% of ${em.total} held-out problems` : ''));
  if (v.json) console.log(JSON.stringify(result));
  r.trainer.dispose(); r.model.dispose();
  return 0;
}
