/** Finding runbooks: the ones shipped in runbooks/, a team's own directory (config `runbooks:`), or a file. */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError } from '../base/errors.js';
import { loadRunbookFile, type Runbook } from './schema.js';

/** runbooks/ at the package root (dist/runbook/ → ../../runbooks). */
export const SHIPPED_DIR = fileURLToPath(new URL('../../runbooks/', import.meta.url));

function yamlFiles(dir: string): string[] {
  try {
    return readdirSync(dir)
      .filter((f) => /\.ya?ml$/.test(f))
      .sort()
      .map((f) => path.join(dir, f));
  } catch (err) {
    throw new UsageError(
      `cannot read the runbook directory ${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      'check runbooks: in keyctl.yaml',
    );
  }
}

/** Every runbook by name; a team's directory replaces a shipped runbook of the same name. */
export function listRunbooks(opts: { teamDir?: string | undefined; file?: string | undefined }): Runbook[] {
  const byName = new Map<string, Runbook>();
  for (const f of yamlFiles(SHIPPED_DIR)) {
    const r = loadRunbookFile(f);
    byName.set(r.name, r);
  }
  if (opts.teamDir)
    for (const f of yamlFiles(opts.teamDir)) {
      const r = loadRunbookFile(f);
      byName.set(r.name, r);
    }
  if (opts.file) {
    const r = loadRunbookFile(opts.file);
    byName.set(r.name, r);
  }
  return [...byName.values()];
}

export function findRunbook(name: string, opts: { teamDir?: string | undefined; file?: string | undefined }): Runbook {
  if (opts.file) {
    const r = loadRunbookFile(opts.file);
    if (r.name !== name) throw new UsageError(`${opts.file} holds runbook "${r.name}", not "${name}"`, `run: keyctl runbook run ${r.name} --file ${opts.file}`);
    return r;
  }
  const all = listRunbooks(opts);
  const found = all.find((r) => r.name === name);
  if (!found) throw new UsageError(`no runbook named "${name}"`, `known: ${all.map((r) => r.name).join(', ')} (keyctl runbook list)`);
  return found;
}
