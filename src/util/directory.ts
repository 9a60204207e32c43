import { promises as fs, statSync, type Stats } from 'node:fs';
import path from 'node:path';

/**
 * Create `dir` and any missing parents (mode 0700), one level at a time. Node's recursive mkdir
 * loops forever at 100% CPU on some paths (`/proc/nope`: procfs answers ENOENT for the path and
 * EEXIST for its parent); this walks up to the nearest existing ancestor with stat, then creates
 * each missing level with a plain mkdir, so any unwritable path fails at once with its error code.
 */
export async function makeDirectory(dir: string): Promise<void> {
  const missing: string[] = [];
  let at = path.resolve(dir);
  for (;;) {
    // Synchronous: a stat of an existing directory, once per write (thousands over many tenants).
    let st: Stats | undefined;
    try {
      st = statSync(at);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (st) {
      if (!st.isDirectory()) throw Object.assign(new Error(`${at} is not a directory`), { code: 'ENOTDIR' });
      break;
    }
    missing.unshift(at);
    const parent = path.dirname(at);
    if (parent === at) break;
    at = parent;
  }
  for (const level of missing) {
    await fs.mkdir(level, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
      // Another run made it meanwhile: fine if it is a directory (checked by the next level or the caller).
      if (err.code !== 'EEXIST') throw err;
    });
  }
}
