#!/usr/bin/env node
// Runs every tests/*.test.ts file with uvu (through tsx) and prints a closing line
// `N passed, N failed`. Each file runs in its own process so that one crashing file
// (or a leaked tensor) cannot hide the results of the others, and so memory stays bounded.
// Usage: node scripts/test.mjs [filter-substring ...]
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const filters = process.argv.slice(2);
const files = readdirSync(join(root, 'tests'))
  .filter((f) => f.endsWith('.test.ts'))
  .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
  .sort();

let passed = 0, failed = 0, skipped = 0;
const failures = [];
const t0 = Date.now();
for (const f of files) {
  const t = Date.now();
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'tests', f)], {
    cwd: root, encoding: 'utf8', env: { ...process.env, FORCE_COLOR: '0' }, maxBuffer: 64 << 20,
  });
  const out = (r.stdout ?? '') + (r.stderr ?? '');
  const total = /Total:\s+(\d+)/.exec(out);
  const pass = /Passed:\s+(\d+)/.exec(out);
  const skip = /Skipped:\s+(\d+)/.exec(out);
  let p = pass ? Number(pass[1]) : 0;
  let n = total ? Number(total[1]) : 0;
  let fl = n - p;
  if (!total || (r.status !== 0 && fl === 0)) fl = Math.max(fl, 1); // crash or no summary
  passed += p; failed += fl; skipped += skip ? Number(skip[1]) : 0;
  const secs = ((Date.now() - t) / 1000).toFixed(1);
  console.log(`${fl === 0 ? 'ok  ' : 'FAIL'} ${f}  ${p}/${n}  ${secs}s`);
  if (fl > 0) { failures.push(f); console.log(out.split('\n').map((l) => '    ' + l).join('\n')); }
}
console.log(`\n${files.length} files in ${((Date.now() - t0) / 1000).toFixed(1)}s` + (failures.length ? `; failing: ${failures.join(', ')}` : ''));
console.log(`${passed} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : ''));
process.exitCode = failed === 0 && files.length > 0 ? 0 : 1;
