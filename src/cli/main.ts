// `ultramoe <command> [options]`: each command lives in ./commands/<name>.ts and exports
// `summary` (one line for the help) and `run(argv) => Promise<number>` (the exit code).
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

export interface Command {
  summary: string;
  run(argv: string[]): Promise<number>;
}

function commandNames(): string[] {
  return readdirSync(join(here, 'commands'))
    .filter((f) => f.endsWith('.ts'))
    .map((f) => f.slice(0, -3))
    .sort();
}

async function load(name: string): Promise<Command> {
  return (await import(join(here, 'commands', `${name}.ts`))) as Command;
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  const names = commandNames();
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    const lines = ['usage: ultramoe <command> [options]   (ultramoe <command> --help for its options)', '', 'commands:'];
    for (const n of names) lines.push(`  ${n.padEnd(10)} ${(await load(n)).summary}`);
    console.log(lines.join('\n'));
    return cmd ? 0 : 1;
  }
  if (!names.includes(cmd)) {
    console.error(`ultramoe: unknown command '${cmd}'; commands: ${names.join(', ')}`);
    return 2;
  }
  return (await load(cmd)).run(rest);
}
