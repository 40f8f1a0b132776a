// Resolve a device spec from a catalog name or a JSON file, with an optional memory override for toy
// runs (e.g. `--device-memory 64MiB`).
import { readFileSync } from 'node:fs';
import { CATALOG, getSpec, parseSpec, withMemory, type DeviceSpec } from './specs.ts';

/** Load and validate a spec from a JSON file; the error lists every problem. */
export function loadSpecFile(path: string): DeviceSpec {
  let text: string;
  try { text = readFileSync(path, 'utf8'); } catch (e) { throw new Error(`cannot read device spec '${path}': ${(e as Error).message}`); }
  let json: unknown;
  try { json = JSON.parse(text); } catch (e) { throw new Error(`device spec '${path}' is not valid JSON: ${(e as Error).message}`); }
  return parseSpec(json, path);
}

/** A catalog name or a path to a .json file, optionally with HBM / host memory overrides (bytes). */
export function resolveSpec(nameOrPath: string, overrides: { hbmBytes?: number; hostMemoryBytes?: number } = {}): DeviceSpec {
  const spec = nameOrPath in CATALOG ? getSpec(nameOrPath) : nameOrPath.endsWith('.json') ? loadSpecFile(nameOrPath) : getSpec(nameOrPath);
  return overrides.hbmBytes !== undefined || overrides.hostMemoryBytes !== undefined ? withMemory(spec, overrides) : spec;
}
