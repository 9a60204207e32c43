/**
 * The envelope keystores, `aws-kms` and `vault-transit`: the keyring's data keys exist in
 * plaintext only in memory; what is stored is each key wrapped by a key-encryption key in the key
 * service (wrap.ts), in a file that is safe to deploy next to the application:
 *
 *     {"format":"keyctl-envelope/1","keyring":"default","primary":"v2","wrapping":"aws-kms",
 *      "keys":{"v1":{"kek":"arn:aws:kms:…:key/…","blob":"<base64>"},"v2":{…}}}
 *
 * and the archive beside it (`<name>.archive.json`, entries also carry `status` and `since`).
 * Applications read the file and unwrap each key with the service (Decrypt with the encryption
 * context of wrap.ts), as docs/keystores.md shows. Both files are written like the file keystore's
 * (0600, atomic replace, compare-and-set under a lock), so a kill -9 leaves the old or the new file.
 *
 * Unwrapped keys are cached by blob for the life of the process: a command reads its keyring
 * several times and should not ask the service each time. Keys keyctl wraps are wrapped once: the
 * blob of an unchanged version is kept as it is.
 */
import { KeystoreConflictError, KeystoreError } from '../base/errors.js';
import type { Logger } from '../base/logger.js';
import { compareVersions, isVersionName } from '../crypto/keys.js';
import { firstDuplicateName } from './document.js';
import { anchorPath, defaultArchivePath, PrivateFile } from './file.js';
import type { AnchorSnapshot, ArchiveDocument, ArchivedKey, ArchiveSnapshot, Keystore, KeyringDocument, KeystoreSnapshot } from './types.js';
import type { KeyWrapper, WrapContext, WrappedKey } from './wrap.js';

export const ENVELOPE_FORMAT = 'keyctl-envelope/1';

export interface WrappedEntry extends WrappedKey {
  status?: ArchivedKey['status'];
  since?: string;
}

/** One of the two files as stored: versions → wrapped keys. */
export interface WrappedDocument {
  keyring: string;
  /** Absent in the archive. */
  primary?: string;
  keys: Map<string, WrappedEntry>;
}

export interface EnvelopeKeystoreOptions {
  file: string;
  wrapper: KeyWrapper;
  /** With tenancy: the tenant whose keyring this is, bound into every encryption context. */
  tenant?: string | undefined;
  log: Logger;
}

/** Where a wrapped key is: the published file or the archive. */
export type WrappedPlace = 'published' | 'archive';

export class EnvelopeKeystore implements Keystore {
  readonly provider: KeyWrapper['provider'];
  readonly writable = true;
  readonly wrapper: KeyWrapper;
  readonly file: string;
  readonly archiveFile: string;
  private readonly o: EnvelopeKeystoreOptions;
  private readonly files: Record<WrappedPlace, PrivateFile>;
  /** blob → data key, for blobs unwrapped or made by this process. */
  private readonly unwrapped = new Map<string, Buffer>();
  /** version → its latest wrapped form and key, so an unchanged key keeps its blob. */
  private readonly wrappedByVersion = new Map<string, { key: Buffer; wrapped: WrappedKey }>();

  constructor(o: EnvelopeKeystoreOptions) {
    this.o = o;
    this.wrapper = o.wrapper;
    this.provider = o.wrapper.provider;
    this.file = o.file;
    this.archiveFile = defaultArchivePath(o.file);
    this.files = { published: new PrivateFile(o.file, 'wrapped keyring file'), archive: new PrivateFile(this.archiveFile, 'wrapped key archive') };
  }

  describe(): string {
    return `${this.o.file} (data keys wrapped by ${this.wrapper.describe()})`;
  }

  /** Where the material of a destroyed version is gone, and where it is not (retire's and purge's words). */
  destructionNote(): string {
    return `its wrapped blob is gone from ${this.o.file} and its archive; a copy of an older file (a deployment, a backup) still unwraps while ${this.wrapper.describe()} can decrypt it`;
  }

  context(keyring: string, version: string): WrapContext {
    return { keyring, version, ...(this.o.tenant !== undefined ? { tenant: this.o.tenant } : {}) };
  }

  async read(): Promise<KeystoreSnapshot | null> {
    const got = await this.readWrapped('published');
    if (!got) return null;
    const keys = new Map<string, Buffer>();
    for (const [version, w] of got.doc.keys) keys.set(version, await this.unwrapEntry(got.doc.keyring, version, w));
    return { doc: { keyring: got.doc.keyring, primary: got.doc.primary!, keys }, revision: got.revision };
  }

  async write(doc: KeyringDocument, expectedRevision: string | null, _why: string): Promise<void> {
    const keys = new Map<string, WrappedEntry>();
    for (const [version, key] of doc.keys) keys.set(version, await this.wrappedFor(doc.keyring, version, key));
    await this.files.published.write(serialiseWrapped({ keyring: doc.keyring, primary: doc.primary, keys }, this.provider), expectedRevision);
  }

  async readArchive(keyring: string): Promise<ArchiveSnapshot> {
    const got = await this.readWrapped('archive');
    if (!got) return { doc: { keyring, keys: new Map() }, revision: null };
    const keys = new Map<string, ArchivedKey>();
    for (const [version, w] of got.doc.keys) {
      keys.set(version, { key: await this.unwrapEntry(got.doc.keyring, version, w), status: w.status!, since: w.since! });
    }
    return { doc: { keyring: got.doc.keyring, keys }, revision: got.revision };
  }

  async writeArchive(doc: ArchiveDocument, expectedRevision: string | null, _why: string): Promise<void> {
    const keys = new Map<string, WrappedEntry>();
    for (const [version, a] of doc.keys) keys.set(version, { ...(await this.wrappedFor(doc.keyring, version, a.key)), status: a.status, since: a.since });
    await this.files.archive.write(serialiseWrapped({ keyring: doc.keyring, keys }, this.provider), expectedRevision);
  }

  async destroyKeyring(_keyring: string, _why: string): Promise<void> {
    await this.files.archive.remove();
    await this.files.published.remove();
  }

  /** A new data key made by the key service (GenerateDataKey, Transit datakey); `write` stores its blob. */
  async newKey(keyring: string, version: string): Promise<Buffer> {
    const made = await this.wrapper.generate(this.context(keyring, version));
    this.remember(version, made.key, made.wrapped);
    return made.key;
  }

  async readAnchor(_keyring: string): Promise<AnchorSnapshot> {
    const file = anchorPath(this.o.file);
    const got = await new PrivateFile(file, 'audit anchor').read();
    return { text: got?.text ?? null, revision: got?.revision ?? null, where: `audit anchor ${file}` };
  }

  async writeAnchor(_keyring: string, text: string, expectedRevision: string | null): Promise<void> {
    await new PrivateFile(anchorPath(this.o.file), 'audit anchor').write(text, expectedRevision);
  }

  // ── the wrapped documents, for rewrap and status ───────────────────────────────────────────

  /** One file as stored (null when it does not exist), with its revision for a compare-and-set. */
  async readWrapped(place: WrappedPlace): Promise<{ doc: WrappedDocument; revision: string } | null> {
    const got = await this.files[place].read();
    if (!got) return null;
    const where = place === 'published' ? `wrapped keyring file ${this.o.file}` : `wrapped key archive ${this.archiveFile}`;
    return { doc: parseWrapped(got.text, where, place), revision: got.revision };
  }

  /**
   * Compare-and-set of one blob: replace `version`'s wrapped key in `place` with `next` only if it
   * is still `expected`. False when it is not (rewrapped, destroyed or replaced meanwhile). A
   * concurrent change elsewhere in the file is read again, not overwritten.
   */
  async replaceWrapped(place: WrappedPlace, version: string, expected: WrappedKey, next: WrappedKey): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      const got = await this.readWrapped(place);
      const now = got?.doc.keys.get(version);
      if (!got || !now || now.blob !== expected.blob) return false;
      got.doc.keys.set(version, { ...now, kek: next.kek, blob: next.blob });
      try {
        await this.files[place].write(serialiseWrapped(got.doc, this.provider), got.revision);
        const key = this.unwrapped.get(expected.blob);
        if (key) this.remember(version, key, next);
        return true;
      } catch (err) {
        if (!(err instanceof KeystoreConflictError) || attempt >= 5) throw err;
      }
    }
  }

  /** The data key of one stored entry, from the service (or this process's cache). */
  async unwrapEntry(keyring: string, version: string, w: WrappedKey): Promise<Buffer> {
    const cached = this.unwrapped.get(w.blob);
    if (cached) return cached;
    const key = await this.wrapper.unwrap(w, this.context(keyring, version));
    if (key.length !== 32)
      throw new KeystoreError(
        `${version} in ${this.o.file} unwraps to ${key.length} bytes, not a 32-byte key`,
        'restore the file from a backup; this blob was not written by keyctl',
      );
    this.remember(version, key, w);
    return key;
  }

  private remember(version: string, key: Buffer, wrapped: WrappedKey): void {
    this.unwrapped.set(wrapped.blob, key);
    this.wrappedByVersion.set(version, { key, wrapped });
  }

  private async wrappedFor(keyring: string, version: string, key: Buffer): Promise<WrappedKey> {
    const known = this.wrappedByVersion.get(version);
    if (known?.key.equals(key)) return known.wrapped;
    const wrapped = await this.wrapper.wrap(key, this.context(keyring, version));
    this.remember(version, key, wrapped);
    return wrapped;
  }
}

export function serialiseWrapped(doc: WrappedDocument, provider: string): string {
  const keys: Record<string, Record<string, string>> = {};
  for (const v of [...doc.keys.keys()].sort(compareVersions)) {
    const e = doc.keys.get(v)!;
    keys[v] = { kek: e.kek, blob: e.blob, ...(e.status ? { status: e.status } : {}), ...(e.since ? { since: e.since } : {}) };
  }
  const head = { format: ENVELOPE_FORMAT, keyring: doc.keyring, ...(doc.primary !== undefined ? { primary: doc.primary } : {}), wrapping: provider };
  return `${JSON.stringify({ ...head, keys }, null, 2)}\n`;
}

export function parseWrapped(text: string, where: string, place: WrappedPlace): WrappedDocument {
  const fix = `restore ${where} from a backup (keyctl backup holds the wrapped blobs), or fix its JSON by hand`;
  const bad = (what: string): never => {
    throw new KeystoreError(`${where}: ${what}`, fix);
  };
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return bad('not valid JSON');
  }
  const duplicate = firstDuplicateName(text);
  if (duplicate) bad(`${duplicate.path} names ${JSON.stringify(duplicate.name)} more than once; keyctl will not guess which one is meant`);
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) bad('expected a JSON object');
  const o = raw as Record<string, unknown>;
  if (o.format !== ENVELOPE_FORMAT) bad(`"format" is ${JSON.stringify(o.format)}, expected "${ENVELOPE_FORMAT}"`);
  if (typeof o.keyring !== 'string' || o.keyring === '') bad('"keyring" must be a non-empty string');
  if (!o.keys || typeof o.keys !== 'object' || Array.isArray(o.keys)) bad('"keys" must be an object keyed by version');
  const keys = new Map<string, WrappedEntry>();
  for (const [version, value] of Object.entries(o.keys as Record<string, unknown>)) {
    if (!isVersionName(version)) bad(`"keys" has an entry "${version}" that is not a version name (v1, v2, …)`);
    const e = (value ?? {}) as Record<string, unknown>;
    if (typeof e.kek !== 'string' || e.kek === '' || typeof e.blob !== 'string' || e.blob === '') bad(`${version} needs "kek" and "blob" strings`);
    const entry: WrappedEntry = { kek: e.kek as string, blob: e.blob as string };
    if (place === 'archive') {
      if (e.status !== 'archived' && e.status !== 'retired') bad(`archive entry ${version} has status "${String(e.status)}", expected "archived" or "retired"`);
      if (typeof e.since !== 'string') bad(`archive entry ${version} needs "since" (an ISO-8601 time)`);
      entry.status = e.status as ArchivedKey['status'];
      entry.since = e.since as string;
    }
    keys.set(version, entry);
  }
  if (place === 'published') {
    if (typeof o.primary !== 'string' || !isVersionName(o.primary)) bad('"primary" must be a version name such as "v1"');
    if (!keys.has(o.primary as string)) bad(`the primary version ${String(o.primary)} has no key in "keys"`);
  }
  return { keyring: o.keyring as string, ...(place === 'published' ? { primary: o.primary as string } : {}), keys };
}
