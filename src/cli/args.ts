// Thin wrapper over node:util parseArgs with a uniform error and help text.
import { parseArgs, type ParseArgsConfig } from 'node:util';

export type Options = NonNullable<ParseArgsConfig['options']>;

export class UsageError extends Error {}

/** Parse argv against `options`; throws UsageError listing the problem and the usage line. */
export function parse<O extends Options>(argv: string[], options: O, usage: string) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\nusage: ${usage}`);
  }
}

/** Parse sizes such as 64MiB, 1.5GB, 4096 into bytes. */
export function parseBytes(s: string): number {
  const m = /^\s*([0-9.]+)\s*([kKmMgGtT]?)(i?)[bB]?\s*$/.exec(s);
  if (!m) throw new UsageError(`not a size: '${s}' (examples: 4096, 64MiB, 1.5GB)`);
  const base = m[3] ? 1024 : 1000;
  const exp = { '': 0, k: 1, m: 2, g: 3, t: 4 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return Math.round(Number(m[1]) * base ** exp);
}
