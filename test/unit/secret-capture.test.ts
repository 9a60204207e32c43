/**
 * The suite-wide secret grep reads every file a keyctl run wrote in its project directory,
 * SQLite databases included, while the test may hold its own connection to that database.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CAPTURE_ENV, declareTestSecret, findLeaks, recordRun } from '../helpers/secret-capture.js';

/** What keyctl does to the database in another process: open it, write a row, close it. */
function writeFromAnotherProcess(file: string, value: number): void {
  const script = `const D = require(${JSON.stringify(createRequire(import.meta.url).resolve('better-sqlite3'))}); const d = new D(process.argv[1]); d.prepare('INSERT INTO t VALUES (?)').run(Number(process.argv[2])); d.close();`;
  execFileSync(process.execPath, ['-e', script, file, String(value)]);
}

describe('the secret grep over a project directory', () => {
  let dir: string;
  let capture: string;
  let before: string | undefined;
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'keyctl-capture-project-'));
    capture = mkdtempSync(path.join(os.tmpdir(), 'keyctl-capture-'));
    before = process.env[CAPTURE_ENV];
    process.env[CAPTURE_ENV] = capture;
  });
  afterEach(() => {
    if (before === undefined) delete process.env[CAPTURE_ENV];
    else process.env[CAPTURE_ENV] = before;
    rmSync(dir, { recursive: true, force: true });
    rmSync(capture, { recursive: true, force: true });
  });

  it("reads a SQLite database without taking the test's own connection's locks away", () => {
    // A test's connection in WAL mode holds POSIX locks on the database and its -shm file; a close()
    // of any other descriptor of those files in the same process drops them. Another process then
    // takes itself for the last one, deletes the -wal and -shm on close, and this connection goes
    // on reading its unlinked copy: the kill -9 test once polled a checkpoint frozen at 900 rows.
    const file = path.join(dir, 'app.db');
    const db = new Database(file);
    try {
      db.pragma('journal_mode = WAL');
      db.exec('CREATE TABLE t (x INTEGER)');
      db.prepare('INSERT INTO t VALUES (?)').run(1);
      const count = () => (db.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n;
      expect(count()).toBe(1);
      recordRun({ how: 'child', args: ['status'], cwd: dir, stdout: '', stderr: '', startedMs: 0 });
      // The test polls as keyctl writes, as kill-resume does.
      for (let x = 2; x <= 4; x++) {
        writeFromAnotherProcess(file, x);
        expect(count(), readdirSync(dir).join(' ')).toBe(x);
      }
    } finally {
      db.close();
    }
  });

  it('still finds a secret written into a SQLite database that the test holds open', () => {
    const secret = Buffer.alloc(32, 7);
    declareTestSecret(secret, 'a test key');
    const file = path.join(dir, 'app.db');
    const db = new Database(file);
    try {
      db.pragma('journal_mode = WAL');
      db.exec('CREATE TABLE t (x TEXT)');
      db.prepare('INSERT INTO t VALUES (?)').run(secret.toString('hex'));
      // Into the database file itself, which the open connection holds locked (read by another process).
      db.pragma('wal_checkpoint(TRUNCATE)');
      recordRun({ how: 'child', args: ['status'], cwd: dir, stdout: '', stderr: '', startedMs: 0 });
    } finally {
      db.close();
    }
    const found = findLeaks(capture).leaks;
    expect(found.map((l) => [l.secret, l.form])).toContainEqual(['a test key', 'hex']);
    expect(found.some((l) => l.where.includes(`file ${path.join(dir, 'app.db')} written`))).toBe(true);
  });
});
