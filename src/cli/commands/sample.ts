// `ultramoe sample`: generate text from a checkpoint.
import { parse, UsageError } from '../args.ts';
import type { BackendName } from '../../backend/tf.ts';
import { generate } from '../../train/generate.ts';
import { restoreRun } from '../../train/restore.ts';

export const summary = 'generate text from a checkpoint (temperature, top-k, seed)';

const usage = 'ultramoe sample <checkpoint-or-run-dir> [--prompt TEXT] [--tokens N] [--temperature X] [--top-k K] [--seed N] [--backend wasm|cpu] [--json]';

export async function run(argv: string[]): Promise<number> {
  let a;
  try {
    a = parse(argv, {
      prompt: { type: 'string', default: '\n' }, tokens: { type: 'string', default: '200' },
      temperature: { type: 'string', default: '0.8' }, 'top-k': { type: 'string', default: '40' },
      seed: { type: 'string', default: '1' }, backend: { type: 'string', default: 'wasm' },
      json: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h', default: false },
    }, usage);
  } catch (e) { if (e instanceof UsageError) { console.error(e.message); return 2; } throw e; }
  const v = a.values;
  if (v.help) { console.log(`usage: ${usage}`); return 0; }
  const problems: string[] = [];
  const tokens = Number(v.tokens), temperature = Number(v.temperature), topK = Number(v['top-k']), seed = Number(v.seed);
  if (a.positionals.length !== 1) problems.push('give exactly one checkpoint (or run) directory');
  if (!(Number.isInteger(tokens) && tokens > 0)) problems.push(`--tokens must be a positive integer (got ${v.tokens})`);
  if (!(temperature >= 0)) problems.push(`--temperature must be >= 0 (got ${v.temperature})`);
  if (!(Number.isInteger(topK) && topK >= 0)) problems.push(`--top-k must be an integer >= 0 (got ${v['top-k']})`);
  if (!(Number.isInteger(seed) && seed >= 1)) problems.push(`--seed must be an integer >= 1 (got ${v.seed})`);
  if (!['wasm', 'cpu'].includes(v.backend)) problems.push(`--backend must be wasm or cpu (got ${v.backend})`);
  if (problems.length) { console.error(`ultramoe sample:\n  - ${problems.join('\n  - ')}\nusage: ${usage}`); return 2; }
  const r = await restoreRun(a.positionals[0], v.backend as BackendName);
  const tok = r.data.tokenizer;
  const prompt = tok.encode(v.prompt.replace(/\\n/g, '\n'));
  const out = generate(r.model, [prompt], { maxNewTokens: tokens, temperature, topK, seed, contextLen: Math.min(r.cfg.maxSeqLen, r.ck.train.seqLen) })[0];
  const text = tok.decode(out);
  if (v.json) console.log(JSON.stringify({ prompt: v.prompt, text, tokens: out.length, step: r.ck.trainer.step }));
  else process.stdout.write(tok.decode(prompt) + text + '\n');
  r.trainer.dispose(); r.model.dispose();
  return 0;
}
