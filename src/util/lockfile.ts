/**
 * Lock files: created with O_EXCL, holding the owner's pid, host, start time and (on Linux) the
 * kernel's start-time token of the owner process. A lock is stale, and may be taken over, when
 * its owner on this host no longer runs, when its pid now belongs to another process (the token,
 * or for older locks the process's start time, differs), or — for callers that allow it — when it
 * comes from another host and is older than any real run. Anything else is held.
 */
import { closeSync, openSync, readFileSync, unlinkSync, writeSync, constants as fsc, promises as fs } from 'node:fs';
import os from 'node:os';

export interface LockHolder {
  pid?: number;
  host?: string;
  startedAt?: string;
  /** `/proc/<pid>/stat` start time (clock ticks since boot): tells a reused pid apart. */
  pidStart?: string;
}

export interface StaleRules {
  /** A lock from another host whose `startedAt` is older than this is stale (keyctl cannot see its process). */
  foreignAfterMs?: number;
  /** The time `foreignAfterMs` is measured against. */
  now?: Date;
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

let ownStartToken: { token: string | undefined } | undefined;

/** Start time of a process in clock ticks since boot (Linux), or undefined where /proc is missing. */
export function processStartToken(pid: number): string | undefined {
  // This process's own start never changes: read once (every lock this process takes asks).
  if (pid === process.pid && ownStartToken) return ownStartToken.token;
  const token = readStartToken(pid);
  if (pid === process.pid) ownStartToken = { token };
  return token;
}

function readStartToken(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces and parentheses): state is field 3,
    // starttime field 22.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** Wall-clock start of a process (Linux: boot time + start ticks at USER_HZ 100), or undefined. */
function processStartedAt(pid: number): number | undefined {
  const ticks = Number(processStartToken(pid));
  if (!Number.isFinite(ticks)) return undefined;
  try {
    const btime = /^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1];
    return btime === undefined ? undefined : Number(btime) * 1000 + ticks * 10;
  } catch {
    return undefined;
  }
}

/** The live process `holder.pid` is not the one that wrote the lock. */
function pidReused(holder: LockHolder & { pid: number }): boolean {
  if (holder.pidStart !== undefined) {
    const now = processStartToken(holder.pid);
    return now !== undefined && now !== holder.pidStart;
  }
  // A lock written before the token was recorded: a process started after the lock cannot own it
  // (2 s for clock granularity).
  const started = processStartedAt(holder.pid);
  const locked = Date.parse(holder.startedAt ?? '');
  return started !== undefined && Number.isFinite(locked) && started > locked + 2_000;
}

/** A holder on this host whose process is gone or whose pid was reused; a foreign one past `rules.foreignAfterMs`. */
export function isStale(holder: LockHolder, rules: StaleRules = {}): boolean {
  if (holder.host !== os.hostname()) {
    const locked = Date.parse(holder.startedAt ?? '');
    return (
      holder.host !== undefined &&
      rules.foreignAfterMs !== undefined &&
      Number.isFinite(locked) &&
      (rules.now ?? new Date()).getTime() - locked > rules.foreignAfterMs
    );
  }
  if (typeof holder.pid !== 'number') return false;
  return !processAlive(holder.pid) || pidReused({ ...holder, pid: holder.pid });
}

/**
 * One attempt: the release function when this process now holds the lock, else the current holder.
 * A stale holder is taken over under a second, short-lived lock (`<file>.takeover`), re-reading the
 * holder inside it, so two processes finding the same dead holder cannot both remove it — the
 * second would otherwise remove the first one's fresh lock. Release removes the lock only while it
 * is still this process's. Errors other than EEXIST are thrown.
 */
export async function tryLock(file: string, now: Date, rules: StaleRules = {}): Promise<{ release: () => Promise<void> } | { holder: LockHolder }> {
  const token = processStartToken(process.pid);
  const me: LockHolder = { pid: process.pid, host: os.hostname(), startedAt: now.toISOString(), ...(token ? { pidStart: token } : {}) };
  const mine = JSON.stringify(me);
  // Synchronous, as createExclusive: a lock file is a few bytes on a local disk.
  const release = async () => {
    let held = '';
    try {
      held = readFileSync(file, 'utf8');
    } catch {
      return;
    }
    if (held !== mine) return;
    try {
      unlinkSync(file);
    } catch {
      // Gone already.
    }
  };
  for (let attempt = 0; ; attempt++) {
    if (await createExclusive(file, mine)) return { release };
    const holder = await readHolder(file);
    if (attempt > 0 || !(isStale(holder, { now, ...rules }) || (await abandonedEmpty(file, holder)))) return { holder };
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
  // Synchronous: a command over many tenants takes thousands of locks, and each asynchronous call
  // costs a thread-pool round trip several times the work.
  let fd: number;
  try {
    fd = openSync(file, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return false;
  }
  try {
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
  return true;
}

/** The lock's holder; `{}` while it is being written, or when empty or damaged (no positive integer pid). */
export async function readHolder(file: string): Promise<LockHolder> {
  let raw: unknown;
  try {
    raw = JSON.parse(await fs.readFile(file, 'utf8'));
  } catch {
    return {};
  }
  if (typeof raw !== 'object' || raw === null) return {};
  const r = raw as Record<string, unknown>;
  if (typeof r.pid !== 'number' || !Number.isInteger(r.pid) || r.pid <= 0) return {};
  const text = (v: unknown) => (typeof v === 'string' ? v : undefined);
  const holder: LockHolder = { pid: r.pid };
  if (text(r.host) !== undefined) holder.host = text(r.host);
  if (text(r.startedAt) !== undefined) holder.startedAt = text(r.startedAt);
  if (text(r.pidStart) !== undefined) holder.pidStart = text(r.pidStart);
  return holder;
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
