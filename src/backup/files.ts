/**
 * Backup files on disk: names, checksums, the lock against overlapping runs, and retention.
 *
 *   keyctl-backup-<keyring>-<YYYYMMDD>T<HHMMSSmmm>Z.gpg     the OpenPGP message (0600)
 *   keyctl-backup-<keyring>-<YYYYMMDD>T<HHMMSSmmm>Z.gpg.sha256   "<hex>  <name>", as sha256sum -c reads it
 *   .keyctl-backup.lock                                      held while a backup runs
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BackupError, LockedError } from '../base/errors.js';
import { formatTime } from '../base/format.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { tryLock } from '../util/lockfile.js';

export interface BackupFile {
  /** Full path of the .gpg file. */
  file: string;
  name: string;
  keyring: string;
  createdAt: Date;
}

const NAME = /^keyctl-backup-([A-Za-z0-9][A-Za-z0-9_.-]{0,63})-(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(\d{3})Z\.gpg$/;

export function backupName(keyring: string, at: Date): string {
  const iso = at.toISOString(); // 2026-11-22T08:15:00.123Z
  const stamp = `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}T${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}${iso.slice(20, 23)}Z`;
  return `keyctl-backup-${keyring}-${stamp}.gpg`;
}

export function parseBackupName(name: string): { keyring: string; createdAt: Date } | null {
  const m = NAME.exec(name);
  if (!m) return null;
  const [, keyring, y, mo, d, h, mi, s, ms] = m;
  return { keyring: keyring!, createdAt: new Date(`${y}-${mo}-${d}T${h}:${mi}:${s}.${ms}Z`) };
}

/** This keyring's backups in `dir`, newest first. */
export async function listBackups(dir: string, keyring: string): Promise<BackupFile[]> {
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new BackupError(`cannot list the backup directory ${dir}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  const out: BackupFile[] = [];
  for (const name of names) {
    const p = parseBackupName(name);
    if (p && p.keyring === keyring) out.push({ file: path.join(dir, name), name, ...p });
  }
  return out.sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime());
}

export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export function checksumFile(file: string): string {
  return `${file}.sha256`;
}

export async function writeChecksum(file: string, hex: string): Promise<void> {
  await writeFileAtomic(checksumFile(file), `${hex}  ${path.basename(file)}\n`, 0o600);
}

export type ChecksumState = { ok: true; hex: string } | { ok: false; missing: boolean; problem: string };

/** Compare a backup with its .sha256 file. */
export async function checkChecksum(file: string, data?: Uint8Array): Promise<ChecksumState> {
  let recorded: string;
  try {
    recorded = (await fs.readFile(checksumFile(file), 'utf8')).trim().split(/\s+/)[0] ?? '';
  } catch {
    return { ok: false, missing: true, problem: `checksum file ${path.basename(checksumFile(file))} is missing` };
  }
  let bytes = data;
  if (!bytes) {
    try {
      bytes = await fs.readFile(file);
    } catch (err) {
      return { ok: false, missing: false, problem: `cannot read ${path.basename(file)}: ${(err as NodeJS.ErrnoException).code ?? String(err)}` };
    }
  }
  const actual = sha256Hex(bytes);
  return actual === recorded.toLowerCase()
    ? { ok: true, hex: actual }
    : { ok: false, missing: false, problem: `SHA-256 of ${path.basename(file)} is ${actual}, its checksum file says ${recorded || '(nothing)'}` };
}

const LOCK = '.keyctl-backup.lock';

/**
 * A backup takes seconds; a lock from another host (a shared backup directory) this much older
 * than now is left by a run that died there, since keyctl cannot look at that host's processes.
 */
export const FOREIGN_LOCK_STALE_MS = 6 * 3_600_000;

/**
 * Take the backup directory's lock (O_EXCL file with pid, host and start time). A lock is taken
 * over when its process on this host is gone or its pid now belongs to a newer process, when it
 * names no holder (empty or damaged) and is more than a few seconds old, or when it comes from
 * another host and is older than FOREIGN_LOCK_STALE_MS. Any other lock refuses, saying how to clear it.
 */
export async function acquireLock(dir: string, now: Date): Promise<() => Promise<void>> {
  const file = path.join(dir, LOCK);
  let got: Awaited<ReturnType<typeof tryLock>>;
  try {
    got = await tryLock(file, now, { foreignAfterMs: FOREIGN_LOCK_STALE_MS });
  } catch (err) {
    throw new BackupError(
      `cannot create the lock file in ${dir}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
      'check that the backup directory is writable by this user',
    );
  }
  if ('release' in got) return got.release;
  const holder = got.holder;
  const clear = `remove the lock: rm ${file}`;
  if (holder.pid === undefined) {
    throw new LockedError(
      `the backup lock ${file} names no holder (empty or damaged); another run may be writing it right now`,
      `try again in a few seconds (keyctl takes such a lock over once it is 5 s old); if no keyctl backup runs, ${clear}`,
    );
  }
  const since = Date.parse(holder.startedAt ?? '');
  const where = `another keyctl backup is running in ${dir} (pid ${holder.pid} on ${holder.host ?? '?'}, since ${Number.isNaN(since) ? '?' : formatTime(new Date(since))})`;
  if (holder.host !== os.hostname()) {
    throw new LockedError(
      where,
      `keyctl cannot check a process on ${holder.host ?? 'an unnamed host'}; it takes the lock over once it is ${FOREIGN_LOCK_STALE_MS / 3_600_000} h old. If no keyctl backup runs there, ${clear}`,
    );
  }
  throw new LockedError(where, `wait for it to finish; if pid ${holder.pid} is not a keyctl backup (ps -p ${holder.pid} -o args=), ${clear}`);
}

export interface PruneResult {
  deleted: string[];
  kept: number;
}

/**
 * Delete this keyring's backups older than `retentionDays`, never touching the newest
 * `keepAtLeast` backups whose checksum still matches. Call only after a successful backup.
 */
export async function pruneBackups(
  dir: string,
  keyring: string,
  now: Date,
  retentionDays: number,
  keepAtLeast: number,
  keep: ReadonlySet<string> = new Set(),
): Promise<PruneResult> {
  const all = await listBackups(dir, keyring);
  // `keep`: backups that are the newest holding some key still needed (never pruned).
  const protectedNames = new Set<string>(keep);
  for (const b of all) {
    if (protectedNames.size - keep.size >= keepAtLeast) break;
    if ((await checkChecksum(b.file)).ok) protectedNames.add(b.name);
  }
  const cutoff = now.getTime() - retentionDays * 86_400_000;
  const deleted: string[] = [];
  for (const b of all) {
    if (protectedNames.has(b.name) || b.createdAt.getTime() >= cutoff) continue;
    await fs.unlink(b.file).catch(() => undefined);
    await fs.unlink(checksumFile(b.file)).catch(() => undefined);
    deleted.push(b.name);
  }
  return { deleted, kept: all.length - deleted.length };
}
