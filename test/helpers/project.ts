/** A demo project on the embedded default (SQLite + file keystore) for e2e tests, and its keys. */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'vitest';
import { keyctlInProcess, type RunResult } from './cli.js';

/** `init --demo` in a new directory (added to `dirs` for cleanup), no propagation wait, policy overrides. */
export async function demoProject(
  dirs: string[],
  rows: number,
  policy: Record<string, string> = {},
): Promise<{ dir: string; run: (...a: string[]) => Promise<RunResult> }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'keyctl-proj-'));
  dirs.push(dir);
  const run = (...args: string[]) => keyctlInProcess(args, { cwd: dir, env: { KEYCTL_ACTOR: 'op@test', NO_COLOR: '1' } });
  expect((await run('init', '--demo', '--rows', String(rows))).code).toBe(0);
  const file = path.join(dir, 'keyctl.yaml');
  let text = readFileSync(file, 'utf8').replace(/minPropagationSeconds: \d+/, 'minPropagationSeconds: 0');
  for (const [k, v] of Object.entries(policy)) text = text.replace(new RegExp(`${k}: \\S+`), `${k}: ${v}`);
  writeFileSync(file, text);
  return { dir, run };
}

/** Every key the file keystore still holds, published or archived. */
export function keysHeld(dir: string): Map<string, Buffer> {
  const keys = new Map<string, Buffer>();
  const pub = JSON.parse(readFileSync(path.join(dir, '.keyctl/keyring.json'), 'utf8')) as { keys: Record<string, string> };
  for (const [v, k] of Object.entries(pub.keys)) keys.set(v, Buffer.from(k, 'base64'));
  if (existsSync(path.join(dir, '.keyctl/keyring.archive.json'))) {
    const arch = JSON.parse(readFileSync(path.join(dir, '.keyctl/keyring.archive.json'), 'utf8')) as { keys: Record<string, { key: string }> };
    for (const [v, a] of Object.entries(arch.keys)) keys.set(v, Buffer.from(a.key, 'base64'));
  }
  return keys;
}
