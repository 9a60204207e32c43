/**
 * Imports point down only: cli → runbook/ui → core/rotation → reencrypt/keystore/backup →
 * db/crypto/config/util → base. A file may import its own floor or any floor below it, never above.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const src = fileURLToPath(new URL('../../src', import.meta.url));

/** Floor of each top-level folder of src/ (higher may import lower). */
const FLOORS: Record<string, number> = {
  base: 0,
  util: 1,
  crypto: 1,
  config: 1,
  db: 1,
  keystore: 2,
  reencrypt: 2,
  backup: 2,
  rotation: 3,
  core: 3,
  runbook: 4,
  ui: 4,
  cli: 5,
};

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

function folderOf(file: string, root: string): string {
  return path.relative(root, file).split(path.sep)[0]!;
}

/** Every relative import (static, type-only and dynamic) that goes up a floor. */
function upwardImports(root = src): string[] {
  const bad: string[] = [];
  for (const f of files(root)) {
    const from = folderOf(f, root);
    const text = readFileSync(f, 'utf8');
    for (const m of text.matchAll(/(?:from|import)\s*\(?\s*'(\.[^']+)'/g)) {
      const target = path.resolve(path.dirname(f), m[1]!);
      const to = folderOf(target, root);
      if (FLOORS[to] === undefined || FLOORS[from] === undefined) {
        bad.push(`${path.relative(root, f)}: imports ${m[1]} (folder ${to} has no floor; add it to FLOORS)`);
      } else if (FLOORS[to]! > FLOORS[from]!) {
        bad.push(`${path.relative(root, f)} (${from}, floor ${FLOORS[from]}) imports ${m[1]} (${to}, floor ${FLOORS[to]})`);
      }
    }
  }
  return bad;
}

describe('the layers of src/', () => {
  it('every top-level folder has a floor', () => {
    const folders = readdirSync(src).filter((f) => statSync(path.join(src, f)).isDirectory());
    expect(folders.filter((f) => FLOORS[f] === undefined)).toEqual([]);
  });

  it('no import goes up a floor', () => {
    expect(upwardImports()).toEqual([]);
  });

  it('the check catches an upward import added on purpose (static, type-only and dynamic)', () => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'keyctl-layers-'));
    mkdirSync(path.join(root, 'db'));
    mkdirSync(path.join(root, 'cli'));
    writeFileSync(path.join(root, 'cli', 'main.ts'), "import { x } from '../db/x.js';\n");
    writeFileSync(path.join(root, 'db', 'x.ts'), "import type { Y } from '../cli/main.js';\nexport const x = () => import('../cli/main.js');\n");
    expect(upwardImports(root)).toEqual([
      'db/x.ts (db, floor 1) imports ../cli/main.js (cli, floor 5)',
      'db/x.ts (db, floor 1) imports ../cli/main.js (cli, floor 5)',
    ]);
  });
});

/**
 * Lines outside src/db/dialects/ that branch on a dialect's name or test a driver's error code:
 * each dialect's differences belong in its own class there.
 */
function dialectBranches(root = src): string[] {
  const name = `'(?:sqlite|pg|mysql)'`;
  const patterns = [
    new RegExp(`[!=]==\\s*${name}|${name}\\s*[!=]==|case\\s+${name}\\s*:`),
    // driver error codes: SQLite's, MySQL's, PostgreSQL's SQLSTATEs
    /'(?:SQLITE_[A-Z_]+|ER_[A-Z_]+|[0-9][0-9A-Z][0-9A-Z]{3})'/,
  ];
  const found: string[] = [];
  for (const f of files(root)) {
    const rel = path.relative(root, f);
    if (rel.startsWith(`db${path.sep}dialects${path.sep}`)) continue;
    readFileSync(f, 'utf8')
      .split('\n')
      .forEach((line, i) => {
        if (patterns.some((p) => p.test(line))) found.push(`${rel}:${i + 1}: ${line.trim()}`);
      });
  }
  return found;
}

describe('dialect differences live in src/db/dialects/', () => {
  it('no other module branches on a dialect name or a driver error code', () => {
    expect(dialectBranches()).toEqual([]);
  });

  it('the check catches a branch added on purpose', () => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'keyctl-dialects-'));
    mkdirSync(path.join(root, 'reencrypt'));
    writeFileSync(
      path.join(root, 'reencrypt', 'x.ts'),
      "const fn = db.adapter.dialect === 'mysql' ? 'RAND()' : 'random()';\nif (code === 'ER_DUP_ENTRY') retry();\nok();\n",
    );
    expect(dialectBranches(root)).toHaveLength(2);
  });
});
