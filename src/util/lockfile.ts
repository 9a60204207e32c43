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
 * One attempt: the release function when this process now holds the lock, else the current holder
 * (a stale holder is removed and the attempt repeated once). Errors other than EEXIST are thrown.
 */
export async function tryLock(file: string, now: Date): Promise<{ release: () => Promise<void> } | { holder: LockHolder }> {
  const me: LockHolder = { pid: process.pid, host: os.hostname(), startedAt: now.toISOString() };
  for (let attempt = 0; ; attempt++) {
    try {
      const h = await fs.open(file, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600);
      await h.writeFile(JSON.stringify(me));
      await h.close();
      return { release: async () => void (await fs.unlink(file).catch(() => undefined)) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const holder = await readHolder(file);
    if (attempt === 0 && (isStale(holder) || (await abandonedEmpty(file, holder)))) {
      await fs.unlink(file).catch(() => undefined);
      continue;
    }
    return { holder };
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
  try {
    return Date.now() - (await fs.stat(file)).mtimeMs > 5_000;
  } catch {
    return false;
  }
}
