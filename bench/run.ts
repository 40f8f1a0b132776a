// `npm run bench`: runs every benchmark in bench/*.ts (this file excepted), each in its own
// process (a crash or a leaked wasm heap cannot affect the next), passing the arguments through
// (e.g. `npm run bench -- --quick`). Each benchmark writes its own bench/results/*.json.
// Select some with `--only model,gemm`; `--vs-torch` adds the PyTorch side-by-side run.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const onlyAt = argv.indexOf('--only');
const only = onlyAt >= 0 ? argv[onlyAt + 1].split(',') : null;
const pass = onlyAt >= 0 ? argv.filter((_, i) => i !== onlyAt && i !== onlyAt + 1) : argv;
const files = readdirSync(here)
  .filter((f) => f.endsWith('.ts') && f !== 'run.ts')
  .filter((f) => !only || only.includes(f.replace(/\.ts$/, '')))
  // The PyTorch comparison needs Debian's python3-torch and takes minutes: only on request.
  .filter((f) => f !== 'vs-torch.ts' || argv.includes('--vs-torch') || !!only?.includes('vs-torch'))
  .sort();

let failed = 0;
for (const f of files) {
  console.log(`\n=== bench/${f} ${pass.join(' ')}`);
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(here, f), ...pass], { stdio: 'inherit', cwd: join(here, '..') });
  console.log(`=== bench/${f}: ${r.status === 0 ? 'ok' : `FAILED (exit ${r.status})`} in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
  if (r.status !== 0) failed++;
}
console.log(`\n${files.length - failed}/${files.length} benchmarks ok; results in bench/results/`);
process.exitCode = failed ? 1 : 0;
