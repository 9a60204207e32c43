/**
 * The `file` keystore, the embedded default: the published keyring document as a JSON file,
 * and the archive beside it (`<name>.archive.json`). Both are created 0600 inside a 0700
 * directory, replaced atomically (temp file, fsync, rename, fsync of the directory) under an
 * exclusive lock that covers the check for concurrent changes, and refused when group or others
 * can read them. Temp files left by a killed writer are removed at the next read.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fstatSync, lstatSync, openSync, readFileSync, statSync, promises as fs, constants as fsc } from 'node:fs';
import path from 'node:path';
import { makeDirectory } from '../util/directory.js';
import { KeystoreConflictError, KeystoreError } from '../base/errors.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { abandonedEmpty, isStale, processAlive, readHolder, tryLock } from '../util/lockfile.js';
import { parseArchiveJson, parseKeyringJson, serialiseArchive, serialiseKeyring } from './document.js';
import type { AnchorSnapshot, ArchiveDocument, ArchiveSnapshot, Keystore, KeyringDocument, KeystoreSnapshot } from './types.js';

/** One private JSON file: permission checks, revisions, atomic replacement. */
export class PrivateFile {
  constructor(
    readonly file: string,
    readonly what: string,
  ) {}

  async read(): Promise<{ text: string; revision: string } | null> {
    await assertSafeDirectory(path.dirname(this.file));
    // Synchronous: a few small local reads (a command over many tenants makes thousands; each
    // asynchronous call costs a thread-pool round trip several times the read itself).
    let fd: number;
    try {
      fd = openSync(this.file, fsc.O_RDONLY | fsc.O_NOFOLLOW);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return null;
      if (code === 'ELOOP') {
        throw new KeystoreError(`${this.what} ${this.file} is a symbolic link; keyctl refuses to follow it`, 'point keystore.path at the real file');
      }
      throw new KeystoreError(
        `cannot open ${this.what} ${this.file}: ${code ?? (err as Error).message}`,
        'check that the path exists and that you may read it',
      );
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw new KeystoreError(`${this.what} path ${this.file} is not a regular file`);
      assertTrustedOwner(`${this.what} ${this.file}`, this.file, st.uid);
      assertPrivateMode(this.file, st.mode);
      const text = readFileSync(fd, 'utf8');
      return { text, revision: revisionOf(text) };
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Compare-and-set: under an exclusive lock file (`<file>.lock`, O_EXCL, owner pid and host, a
   * dead owner's lock taken over), read the current revision, refuse if it is not the one the
   * caller read, write the temp file, fsync, rename — so two writers can never both pass the check.
   */
  async write(text: string, expectedRevision: string | null): Promise<void> {
    const dir = path.dirname(this.file);
    try {
      // One level at a time: a recursive mkdir below /proc or /sys can spin forever.
      await makeDirectory(dir);
    } catch (err) {
      throw new KeystoreError(
        `cannot create keystore directory ${dir}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
        'check the permissions of its parent directory',
      );
    }
    await assertSafeDirectory(dir);
    const release = await this.lock();
    try {
      await removeDeadTempFiles(this.file, { listing: 'once' });
      await this.writeLocked(text, expectedRevision);
    } finally {
      await release();
    }
  }

  private async lock(): Promise<() => Promise<void>> {
    const file = `${this.file}.lock`;
    const deadline = Date.now() + LOCK_WAIT_MS;
    for (let wait = 20; ; wait = Math.min(wait * 2, 500)) {
      let got: Awaited<ReturnType<typeof tryLock>>;
      try {
        got = await tryLock(file, new Date());
      } catch (err) {
        throw new KeystoreError(
          `cannot create the lock file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
          'check the permissions of the keystore directory',
        );
      }
      if ('release' in got) return got.release;
      if (Date.now() > deadline) {
        const h = got.holder;
        throw new KeystoreError(
          `${this.what} ${this.file} is locked by another keyctl (pid ${h.pid ?? '?'} on ${h.host ?? '?'}, since ${h.startedAt ?? '?'}) for more than ${LOCK_WAIT_MS / 1000} s`,
          `wait for it to finish and run the command again; if no such process exists, remove ${file}`,
        );
      }
      await new Promise((r) => setTimeout(r, wait));
    }
  }

  /** Remove the file (under the lock); a missing one is already gone. */
  async remove(): Promise<void> {
    await assertSafeDirectory(path.dirname(this.file));
    const release = await this.lock();
    try {
      await removeDeadTempFiles(this.file);
      await fs.unlink(this.file).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT')
          throw new KeystoreError(`cannot remove ${this.what} ${this.file}: ${err.code ?? err.message}`, 'check the permissions of its directory');
      });
    } finally {
      await release();
    }
  }

  private async writeLocked(text: string, expectedRevision: string | null): Promise<void> {
    const current = (await this.read())?.revision ?? null;
    if (current !== expectedRevision) {
      throw new KeystoreConflictError(
        expectedRevision === null ? `${this.what} ${this.file} already exists` : `${this.what} ${this.file} was changed by someone else since keyctl read it`,
        'run the command again so it starts from the current keyring',
      );
    }
    try {
      await writeFileAtomic(this.file, text, 0o600);
    } catch (err) {
      throw new KeystoreError(
        `cannot write ${this.what} ${this.file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
        'check free disk space and the permissions of its directory; the previous version is unchanged',
      );
    }
  }
}

export class FileKeystore implements Keystore {
  readonly provider = 'file';
  readonly writable = true;
  readonly file: string;
  readonly archiveFile: string;
  private readonly published: PrivateFile;
  private readonly archive: PrivateFile;
  private cleaned = false;

  constructor(file: string, archiveFile = defaultArchivePath(file)) {
    this.file = file;
    this.archiveFile = archiveFile;
    this.published = new PrivateFile(file, 'keyring file');
    this.archive = new PrivateFile(archiveFile, 'key archive');
  }

  describe(): string {
    return `file keystore ${this.file}`;
  }

  async read(): Promise<KeystoreSnapshot | null> {
    // Temp files of a writer killed before its rename hold key material: gone at the next run
    // (not while a writer holds the lock: it may be on another host sharing the directory). Once
    // per keystore in a process: a command reads its keyring several times, and a directory of
    // many tenants' keyrings is long to list.
    if (!this.cleaned) {
      for (const f of [this.file, this.archiveFile]) if (await lockFree(`${f}.lock`)) await removeDeadTempFiles(f, { listedOnce: true });
      this.cleaned = true;
    }
    const got = await this.published.read();
    if (!got) return null;
    const doc = parseKeyringJson(got.text, `keyring file ${this.file}`, 'restore the file from a backup, or fix its JSON by hand');
    return { doc, revision: got.revision };
  }

  async write(doc: KeyringDocument, expectedRevision: string | null, _why: string): Promise<void> {
    await this.published.write(serialiseKeyring(doc), expectedRevision);
  }

  async readArchive(keyring: string): Promise<ArchiveSnapshot> {
    const got = await this.archive.read();
    if (!got) return { doc: { keyring, keys: new Map() }, revision: null };
    const doc = parseArchiveJson(got.text, `key archive ${this.archiveFile}`, 'restore the archive from a backup, or fix its JSON by hand');
    return { doc, revision: got.revision };
  }

  async writeArchive(doc: ArchiveDocument, expectedRevision: string | null, _why: string): Promise<void> {
    await this.archive.write(serialiseArchive(doc), expectedRevision);
  }

  /** Archive first, then the published file: a crash between the two leaves the keyring to finish shredding. */
  async destroyKeyring(_keyring: string, _why: string): Promise<void> {
    await this.archive.remove();
    await this.published.remove();
  }

  /** The audit anchor: `<name>.audit-anchor.json` beside the keyring file, 0600, same lock and check-and-set. */
  readAnchor(_keyring: string): Promise<AnchorSnapshot> {
    return readAnchorBeside(this.file);
  }

  writeAnchor(_keyring: string, text: string, expectedRevision: string | null): Promise<void> {
    return writeAnchorBeside(this.file, text, expectedRevision);
  }
}

/** The audit anchor beside a keyring file (`<name>.audit-anchor.json`), as the file and envelope keystores keep it. */
export async function readAnchorBeside(keyringFile: string): Promise<AnchorSnapshot> {
  const file = anchorPath(keyringFile);
  const got = await new PrivateFile(file, 'audit anchor').read();
  return { text: got?.text ?? null, revision: got?.revision ?? null, where: `audit anchor ${file}` };
}

export async function writeAnchorBeside(keyringFile: string, text: string, expectedRevision: string | null): Promise<void> {
  await new PrivateFile(anchorPath(keyringFile), 'audit anchor').write(text, expectedRevision);
}

/** `.keyctl/keyring.json` → `.keyctl/keyring.audit-anchor.json` */
export function anchorPath(file: string): string {
  const ext = path.extname(file);
  return path.join(path.dirname(file), `${path.basename(file, ext)}.audit-anchor${ext || '.json'}`);
}

/** `.keyctl/keyring.json` → `.keyctl/keyring.archive.json` */
export function defaultArchivePath(file: string): string {
  const ext = path.extname(file);
  return path.join(path.dirname(file), `${path.basename(file, ext)}.archive${ext || '.json'}`);
}

const LOCK_WAIT_MS = 30_000;

/** No lock, or a stale one (left in place: the next writer takes it over): nobody is writing. */
async function lockFree(lock: string): Promise<boolean> {
  if (!existsSync(lock)) return true;
  const holder = await readHolder(lock);
  return isStale(holder) || (await abandonedEmpty(lock, holder));
}

/**
 * The temp files in `dir`, listed again only when the directory changed (its mtime moves whenever
 * a file is created, renamed or removed in it): a read's clean-up, done for each of thousands of
 * tenants' keyrings in one directory, costs a stat instead of a listing.
 */
const listed = new Map<string, { mtimeMs: number; names: string[] }>();
async function tempFilesIn(dir: string): Promise<string[]> {
  // Synchronous: one stat per read, thousands in a command over many tenants.
  const { mtimeMs } = statSync(dir);
  const known = listed.get(dir);
  if (known && known.mtimeMs === mtimeMs) return known.names;
  const names = (await fs.readdir(dir)).filter((n) => n.endsWith('.tmp'));
  listed.set(dir, { mtimeMs, names });
  return names;
}

/**
 * The temp files in `dir` when this process first listed it: a write (under its file's lock)
 * removes a dead writer's temp files of that file. A command writing thousands of tenants'
 * anchors in one directory lists it once; a writer killed during this command leaves a file the
 * next command removes.
 */
const listedByProcess = new Map<string, string[]>();
async function tempFilesListedOnce(dir: string): Promise<string[]> {
  let names = listedByProcess.get(dir);
  if (!names) {
    names = (await fs.readdir(dir)).filter((n) => n.endsWith('.tmp'));
    listedByProcess.set(dir, names);
  }
  return names;
}

/**
 * Remove `.<name>.<pid>.<random>.tmp` files (writeFileAtomic's temp files) whose writer on this host
 * no longer runs: a kill -9 between writing and renaming leaves one, with key material in it.
 * `listedOnce`: the directory is listed again only when it changed; `listing: 'once'`: once per process.
 */
export async function removeDeadTempFiles(file: string, opts: { listedOnce?: boolean; listing?: 'once' } = {}): Promise<string[]> {
  const dir = path.dirname(file);
  const prefix = `.${path.basename(file)}.`;
  let names: string[];
  try {
    names = opts.listing === 'once' ? await tempFilesListedOnce(dir) : opts.listedOnce ? await tempFilesIn(dir) : await fs.readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    if (!name.startsWith(prefix) || !name.endsWith('.tmp')) continue;
    const pid = Number(name.slice(prefix.length).split('.')[0]);
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || processAlive(pid)) continue;
    await fs.unlink(path.join(dir, name)).catch(() => undefined);
    removed.push(name);
  }
  const once = listedByProcess.get(dir);
  if (opts.listing === 'once' && once && removed.length > 0)
    listedByProcess.set(
      dir,
      once.filter((n) => !removed.includes(n)),
    );
  return removed;
}

function revisionOf(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** Refuse key files that group or others can access, showing the chmod that fixes it. */
export function assertPrivateMode(file: string, mode: number): void {
  const perms = mode & 0o777;
  if ((perms & 0o077) !== 0) {
    throw new KeystoreError(
      `keyring file ${file} is accessible by group or others (mode ${perms.toString(8).padStart(4, '0')}); keyctl refuses to use it`,
      `restrict it to its owner with:\n  chmod 600 ${shellQuote(file)}\nand, if anyone else could have read it, treat its keys as exposed and rotate them`,
    );
  }
}

/**
 * Who may own key files and their directory: the user running keyctl, and root (e.g. files
 * provisioned by configuration management). Running as root, that is root alone: a file owned by
 * another account is refused even though root could read it, because that account could have
 * replaced the keys. No uid (Windows): not checked.
 */
function trustedOwner(uid: number): boolean {
  const me = process.getuid?.();
  return me === undefined || uid === me || uid === 0;
}

function ownerProblem(what: string, uid: number): string {
  return `${what} is owned by uid ${uid}, not by you (uid ${process.getuid?.()}) or root; whoever owns it can replace the keys, so keyctl refuses to use it`;
}

export function assertTrustedOwner(what: string, file: string, uid: number): void {
  if (trustedOwner(uid)) return;
  throw new KeystoreError(
    ownerProblem(what, uid),
    `if the file is yours, take it over:\n  chown ${process.getuid?.()} ${shellQuote(file)}\nif it is not, treat its keys as untrusted: compare their fingerprints with \`keyctl status\` before relying on them`,
  );
}

/**
 * The directory holding key files (the one keyctl creates 0700) must be a real directory, not a
 * symbolic link, owned by the user or root and writable by nobody else: whoever can write there
 * can swap the keyring file, plant a lock or read a writer's temp file. A missing one is created
 * 0700 by the first write.
 */
export async function assertSafeDirectory(dir: string): Promise<void> {
  let st: import('node:fs').Stats;
  try {
    st = lstatSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new KeystoreError(`cannot inspect keystore directory ${dir}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  if (st.isSymbolicLink()) {
    const target = await fs.realpath(dir).catch(() => '(a missing target)');
    throw new KeystoreError(
      `keystore directory ${dir} is a symbolic link to ${target}; keyctl refuses to follow it`,
      `point keystore.path at the real directory (${target}), or replace the link with the directory itself`,
    );
  }
  if (!st.isDirectory()) throw new KeystoreError(`keystore directory ${dir} is not a directory`, 'fix keystore.path in keyctl.yaml');
  if (!trustedOwner(st.uid)) {
    throw new KeystoreError(
      ownerProblem(`keystore directory ${dir}`, st.uid),
      `keep the keyring in a directory of your own (keystore.path in keyctl.yaml), or if the directory is yours:\n  chown ${process.getuid?.()} ${shellQuote(dir)}`,
    );
  }
  const perms = st.mode & 0o777;
  if ((perms & 0o022) !== 0) {
    throw new KeystoreError(
      `keystore directory ${dir} is writable by group or others (mode ${perms.toString(8).padStart(4, '0')}); anyone who can write there can replace the keys`,
      `restrict it to its owner with:\n  chmod 700 ${shellQuote(dir)}\nand check that the key files in it are the ones you expect (keyctl status shows their fingerprints)`,
    );
  }
}

function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}
