#!/usr/bin/env node
// Entry point of the `ultramoe` command: runs the TypeScript CLI through tsx.
import { register } from 'tsx/esm/api';
register();
const { main } = await import('../src/cli/main.ts');
main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code ?? 0; },
  (err) => { console.error(`ultramoe: ${err?.message ?? err}`); process.exitCode = 1; },
);
