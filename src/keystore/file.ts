/**
 * The `file` keystore, the embedded default: the published keyring document as a JSON file,
 * created 0600 inside a 0700 directory, replaced atomically (temp file, fsync, rename, fsync
 * of the directory) and refused when group or others can read it.
 */
import { createHash } from 'node:crypto';
import { promises as fs, constants as fsc } from 'node:fs';
import path from 'node:path';
import { KeystoreError } from '../core/errors.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { parseKeyringJson, serialiseKeyring } from './document.js';
import type { Keystore, KeyringDocument, KeystoreSnapshot } from './types.js';

export class FileKeystore implements Keystore {
  readonly provider = 'file';
  readonly writable = true;
  readonly file: string;

  constructor(file: string) {
    this.file = file;
  }

  describe(): string {
    return `file keystore ${this.file}`;
  }

  async read(): Promise<KeystoreSnapshot | null> {
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(this.file, fsc.O_RDONLY | fsc.O_NOFOLLOW);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return null;
      if (code === 'ELOOP') {
        throw new KeystoreError(`keyring file ${this.file} is a symbolic link; keyctl refuses to follow it`, 'point keystore.path at the real file');
      }
      throw new KeystoreError(`cannot open keyring file ${this.file}: ${code ?? (err as Error).message}`, 'check that the path exists and that you may read it');
    }
    try {
      const st = await handle.stat();
      if (!st.isFile()) throw new KeystoreError(`keyring path ${this.file} is not a regular file`);
      assertPrivateMode(this.file, st.mode);
      const text = await handle.readFile('utf8');
      const doc = parseKeyringJson(text, `keyring file ${this.file}`, 'restore the file from a backup (`keyctl restore`), or fix its JSON by hand');
      return { doc, revision: revisionOf(text) };
    } finally {
      await handle.close();
    }
  }

  async write(doc: KeyringDocument, expectedRevision: string | null, _why: string): Promise<void> {
    const dir = path.dirname(this.file);
    await ensurePrivateDir(dir);
    const current = await this.currentRevision();
    if (current !== expectedRevision) {
      throw new KeystoreError(
        expectedRevision === null
          ? `keyring file ${this.file} already exists`
          : `keyring file ${this.file} was changed by someone else since keyctl read it`,
        'run the command again so it starts from the current keyring',
      );
    }
    try {
      await writeFileAtomic(this.file, serialiseKeyring(doc), 0o600);
    } catch (err) {
      throw new KeystoreError(
        `cannot write keyring file ${this.file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
        'check free disk space and the permissions of its directory; the previous keyring is unchanged',
      );
    }
  }

  private async currentRevision(): Promise<string | null> {
    try {
      return revisionOf(await fs.readFile(this.file, 'utf8'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new KeystoreError(`cannot read keyring file ${this.file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
  }
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
      `restrict it to its owner with:\n  chmod 600 ${shellQuote(file)}\n` +
        'and, if anyone else could have read it, treat its keys as exposed and rotate them',
    );
  }
}

async function ensurePrivateDir(dir: string): Promise<void> {
  try {
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new KeystoreError(`cannot create keystore directory ${dir}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, 'check the permissions of its parent directory');
  }
}

function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}
