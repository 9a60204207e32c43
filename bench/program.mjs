// How the benchmarks run keyctl: as an operator does, as a program (`keyctl …`). No dependencies,
// so bench/startup.mjs loads nothing heavy to use it.
import path from 'node:path';

/**
 * The environment for keyctl run as a program: the launcher's shell line runs first (it sets
 * glibc's malloc tunables, see bin/keyctl.js), with this Node.js first on PATH so the launcher's
 * `exec node` finds the same node as the bench.
 */
export const programEnv = {
  ...process.env,
  PATH: [path.dirname(process.execPath), ...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean)].join(path.delimiter),
};

/**
 * Throws where a spawned keyctl could not start (the file missing or not executable): spawnSync
 * then reports `error` and no exit status or output.
 * @param {import('node:child_process').SpawnSyncReturns<string>} r
 * @param {string} what
 */
export function assertStarted(r, what) {
  if (r.error) throw new Error(`${what} did not start: ${r.error.message}`);
}
