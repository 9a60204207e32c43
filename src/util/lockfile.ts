/**
 * Lock files: created with O_EXCL, holding the owner's pid, host and start time. A lock whose owner
 * on this host no longer runs is stale and may be taken over; anything else is held.
 */
import { constants as fsc, promises as fs } from 'node:fs';
import os from 'node:os';

export interface LockHolder {
  pid?: number;
  host?: string;
  startedAt?: string;
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A holder on this host whose process is gone. */
export function isStale(holder: LockHolder): boolean {
  return holder.host === os.hostname() && typeof holder.pid === 'number' && !processAlive(holder.pid);
}

/**
 * One attempt: the release function when this process now holds the lock, else the current holder.
 * A stale holder is taken over under a second, short-lived lock (`<file>.takeover`), re-reading the
 * holder inside it, so two processes finding the same dead holder cannot both remove it — the
 * second would otherwise remove the first one's fresh lock. Release removes the lock only while it
 * is still this process's. Errors other than EEXIST are thrown.
 */
export async function tryLock(file: string, now: Date): Promise<{ release: () => Promise<void> } | { holder: LockHolder }> {
  const me: LockHolder = { pid: process.pid, host: os.hostname(), startedAt: now.toISOString() };
  const mine = JSON.stringify(me);
  const release = async () => {
    if ((await fs.readFile(file, 'utf8').catch(() => '')) === mine) await fs.unlink(file).catch(() => undefined);
  };
  for (let attempt = 0; ; attempt++) {
    if (await createExclusive(file, mine)) return { release };
    const holder = await readHolder(file);
    if (attempt > 0 || !(isStale(holder) || (await abandonedEmpty(file, holder)))) return { holder };
    const takeover = `${file}.takeover`;
    if (!(await createExclusive(takeover, mine))) {
      // Another process is taking it over right now; a takeover lock is held for microseconds,
      // so one older than a few seconds was left by a killed process.
      if (await abandonedEmpty(takeover, {})) await fs.unlink(takeover).catch(() => undefined);
      return { holder };
    }
    try {
      const again = await readHolder(file);
      if (JSON.stringify(again) === JSON.stringify(holder)) await fs.unlink(file).catch(() => undefined);
    } finally {
      await fs.unlink(takeover).catch(() => undefined);
    }
  }
}

async function createExclusive(file: string, text: string): Promise<boolean> {
  try {
    const h = await fs.open(file, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600);
    try {
      await h.writeFile(text);
    } finally {
      await h.close();
    }
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return false;
  }
}

/** The lock's holder; `{}` while it is being written, or when damaged. */
export async function readHolder(file: string): Promise<LockHolder> {
  try {
    return JSON.parse(await fs.readFile(file, 'utf8')) as LockHolder;
  } catch {
    return {};
  }
}

/**
 * A lock file without a holder that has not been touched for a while: its owner was killed between
 * creating it and writing its pid (a live owner writes it within microseconds).
 */
export async function abandonedEmpty(file: string, holder: LockHolder): Promise<boolean> {
  if (holder.pid !== undefined) return false;
  // (Also used for takeover locks, whose holder is not read: any one older than 5 s is abandoned.)
  try {
    return Date.now() - (await fs.stat(file)).mtimeMs > 5_000;
  } catch {
    return false;
  }
}
