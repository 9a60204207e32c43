/**
 * The backup directory's lock (issue 16): an empty or damaged lock file, or one naming a pid that
 * now belongs to another process, must not block backups forever; a lock from another host is
 * taken over only when far older than any backup, and every refusal says how to clear it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, utimesSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LockedError } from '../../src/base/errors.js';
import { acquireLock } from '../../src/backup/files.js';

const LOCK = '.keyctl-backup.lock';
const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill();
});

function dirWithLock(text: string, ageMs = 0): { dir: string; file: string } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'keyctl-bklock-'));
  const file = path.join(dir, LOCK);
  writeFileSync(file, text);
  if (ageMs > 0) {
    const t = new Date(Date.now() - ageMs);
    utimesSync(file, t, t);
  }
  return { dir, file };
}

async function refusal(dir: string, now = new Date()): Promise<LockedError> {
  const err = await acquireLock(dir, now).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(LockedError);
  return err as LockedError;
}

/** A live process started now, whose pid a lock written an hour ago cannot have meant. */
async function freshProcess(): Promise<number> {
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
  children.push(child);
  await new Promise((r) => child.once('spawn', r));
  return child.pid!;
}

describe('backup lock', () => {
  it('an empty or damaged lock left for a while is taken over; a fresh one refuses, naming the file and how to clear it', async () => {
    for (const text of ['', 'null', '42', '{"pid":"x"}', '{garbage']) {
      const old = dirWithLock(text, 60_000);
      const release = await acquireLock(old.dir, new Date());
      expect(existsSync(old.file), JSON.stringify(text)).toBe(true);
      await release();
      expect(existsSync(old.file)).toBe(false);
    }
    const fresh = dirWithLock('');
    const err = await refusal(fresh.dir);
    expect(err.message).toContain(`${fresh.file} names no holder (empty or damaged)`);
    expect(err.hint).toContain(`rm ${fresh.file}`);
  });

  it('a lock naming a pid now used by a process started after the lock is stale (pid reused)', async () => {
    const pid = await freshProcess();
    const hourAgo = new Date(Date.now() - 3_600_000).toISOString();
    const { dir, file } = dirWithLock(JSON.stringify({ pid, host: os.hostname(), startedAt: hourAgo }));
    const release = await acquireLock(dir, new Date());
    await release();
    expect(existsSync(file)).toBe(false);
  });

  it('a live holder on this host still refuses, with the way to clear it', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'keyctl-bklock-'));
    const file = path.join(dir, LOCK);
    const hold = await acquireLock(dir, new Date());
    const err = await refusal(dir);
    expect(err.message).toContain(`another keyctl backup is running in ${dir} (pid ${process.pid} on ${os.hostname()}`);
    expect(err.hint).toContain(`rm ${file}`);
    await hold();
  });

  it('a lock from another host is held while young and taken over once older than any backup', async () => {
    const now = new Date();
    const young = dirWithLock(JSON.stringify({ pid: 4242, host: 'elsewhere.example', startedAt: new Date(now.getTime() - 600_000).toISOString() }));
    const err = await refusal(young.dir, now);
    expect(err.message).toContain('pid 4242 on elsewhere.example');
    expect(err.hint).toMatch(/cannot check a process on elsewhere\.example/);
    expect(err.hint).toContain(`rm ${young.file}`);
    const old = dirWithLock(JSON.stringify({ pid: 4242, host: 'elsewhere.example', startedAt: new Date(now.getTime() - 7 * 3_600_000).toISOString() }));
    await (await acquireLock(old.dir, now))();
    expect(existsSync(old.file)).toBe(false);
  });
});
