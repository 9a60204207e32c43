/**
 * The envelope keystores, `aws-kms` and `vault-transit`: the keyring's data keys exist in
 * plaintext only in memory; what is stored is each key wrapped by a key-encryption key in the key
 * service (wrap.ts), in a file that is safe to deploy next to the application:
 *
 *     {"format":"keyctl-envelope/1","keyring":"default","primary":"v2","wrapping":"aws-kms",
 *      "keys":{"v1":{"kek":"arn:aws:kms:…:key/…","blob":"<base64>"},"v2":{…}}}
 *
 * and the archive beside it (`<name>.archive.json`, entries also carry `status` and `since`) —
 * or, with `storage: database`, the same documents as rows of keyctl's own tables in the
 * application database (envelope-storage.ts). Applications read them and unwrap each key with the
 * service (Decrypt with the encryption context of wrap.ts), as docs/keystores.md shows. Every
 * write is a compare-and-set: files like the file keystore's (0600, atomic replace, under a lock),
 * rows in one transaction, so a kill -9 leaves the old or the new document.
 *
 * Unwrapped keys are cached for the life of the process, by KEK, blob and encryption context: a
 * command reads its keyring several times and should not ask the service each time. A write keeps
 * the stored blob of a version whose key is unchanged (wrappedFor) instead of wrapping it again.
 */
import { KeystoreConflictError, KeystoreError } from '../base/errors.js';
import type { Logger } from '../base/logger.js';
import type { WrappedDocument, WrappedEntry, WrappedPlace } from './envelope-document.js';
import { FileWrappedStorage, type WrappedStorage } from './envelope-storage.js';
import { readAnchorBeside, writeAnchorBeside } from './file.js';
import type { AnchorSnapshot, ArchiveDocument, ArchivedKey, ArchiveSnapshot, Keystore, KeyringDocument, KeystoreSnapshot } from './types.js';
import type { KeyWrapper, WrapContext, WrappedKey } from './wrap.js';

export interface EnvelopeKeystoreOptions {
  /** The wrapped keyring file (`storage: file`); with `storage: database`, where the audit anchor file goes beside. */
  file: string;
  /** Default: the file form, at `file`. */
  storage?: WrappedStorage;
  wrapper: KeyWrapper;
  /** With tenancy: the tenant whose keyring this is, bound into every encryption context. */
  tenant?: string | undefined;
  log: Logger;
}

export class EnvelopeKeystore implements Keystore {
  readonly provider: KeyWrapper['provider'];
  readonly writable = true;
  readonly wrapper: KeyWrapper;
  readonly file: string;
  readonly storage: WrappedStorage;
  private readonly o: EnvelopeKeystoreOptions;
  /** (KEK, blob, context) → data key, for blobs unwrapped or made by this process. */
  private readonly unwrapped = new Map<string, Buffer>();
  /** version → a data key the service just made (newKey) and its blob, for the write that stores it. */
  private readonly made = new Map<string, { key: Buffer; wrapped: WrappedKey }>();

  constructor(o: EnvelopeKeystoreOptions) {
    this.o = o;
    this.wrapper = o.wrapper;
    this.provider = o.wrapper.provider;
    this.file = o.file;
    this.storage = o.storage ?? new FileWrappedStorage(o.file);
  }

  describe(): string {
    return `${this.storage.describe()} (data keys wrapped by ${this.wrapper.describe()})`;
  }

  /** Where the material of a destroyed version is gone, and where it is not (retire's and purge's words). */
  destructionNote(): string {
    return `its wrapped blob is gone from ${this.storage.describe()} and its archive; a copy of an older file (a deployment, a backup) still unwraps while ${this.wrapper.describe()} can decrypt it`;
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
    const stored = await this.storedBlobs();
    const keys = new Map<string, WrappedEntry>();
    for (const [version, key] of doc.keys) keys.set(version, await this.wrappedFor(doc.keyring, version, key, stored, 'published'));
    await this.storage.write('published', { keyring: doc.keyring, primary: doc.primary, keys }, this.provider, expectedRevision);
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
    const stored = await this.storedBlobs();
    const keys = new Map<string, WrappedEntry>();
    for (const [version, a] of doc.keys)
      keys.set(version, { ...(await this.wrappedFor(doc.keyring, version, a.key, stored, 'archive')), status: a.status, since: a.since });
    await this.storage.write('archive', { keyring: doc.keyring, keys }, this.provider, expectedRevision);
  }

  async destroyKeyring(_keyring: string, _why: string): Promise<void> {
    await this.storage.remove('archive');
    await this.storage.remove('published');
  }

  /** A new data key made by the key service (GenerateDataKey, Transit datakey); `write` stores its blob. */
  async newKey(keyring: string, version: string): Promise<Buffer> {
    const made = await this.wrapper.generate(this.context(keyring, version));
    this.remember(keyring, version, made.key, made.wrapped);
    this.made.set(version, made);
    return made.key;
  }

  /** The audit anchor: a file beside `file`, also with storage: database (evidence stays outside the database). */
  readAnchor(_keyring: string): Promise<AnchorSnapshot> {
    return readAnchorBeside(this.o.file);
  }

  writeAnchor(_keyring: string, text: string, expectedRevision: string | null): Promise<void> {
    return writeAnchorBeside(this.o.file, text, expectedRevision);
  }

  // ── the wrapped documents, for rewrap and status ───────────────────────────────────────────

  /** One file as stored (null when it does not exist), with its revision for a compare-and-set. */
  readWrapped(place: WrappedPlace): Promise<{ doc: WrappedDocument; revision: string } | null> {
    return this.storage.read(place);
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
        await this.storage.write(place, got.doc, this.provider, got.revision);
        const key = this.unwrapped.get(cacheKey(this.context(got.doc.keyring, version), expected));
        if (key) this.remember(got.doc.keyring, version, key, next);
        return true;
      } catch (err) {
        if (!(err instanceof KeystoreConflictError) || attempt >= 5) throw err;
      }
    }
  }

  /** The data key of one stored entry, from the service (or this process's cache of the same blob under the same context). */
  async unwrapEntry(keyring: string, version: string, w: WrappedKey): Promise<Buffer> {
    const context = this.context(keyring, version);
    const cached = this.unwrapped.get(cacheKey(context, w));
    if (cached) return cached;
    const key = await this.wrapper.unwrap(w, context);
    if (key.length !== 32)
      throw new KeystoreError(
        `${version} in ${this.storage.describe()} unwraps to ${key.length} bytes, not a 32-byte key`,
        'restore the file from a backup; this blob was not written by keyctl',
      );
    this.remember(keyring, version, key, w);
    return key;
  }

  private remember(keyring: string, version: string, key: Buffer, wrapped: WrappedKey): void {
    this.unwrapped.set(cacheKey(this.context(keyring, version), wrapped), key);
  }

  /** The blobs stored now, per document and version: what a write may keep. */
  private async storedBlobs(): Promise<Record<WrappedPlace, Map<string, WrappedEntry>>> {
    const [published, archive] = await Promise.all([this.storage.read('published'), this.storage.read('archive')]);
    return { published: published?.doc.keys ?? new Map(), archive: archive?.doc.keys ?? new Map() };
  }

  /**
   * The blob to store for `version`: one stored now (in `place` first, else the other document,
   * where a promote or rollback moves it from) or just made by `newKey` — only if this process
   * knows it holds `key` — else a new wrap. A blob seen elsewhere (an old backup's) is never reused.
   */
  private async wrappedFor(
    keyring: string,
    version: string,
    key: Buffer,
    stored: Record<WrappedPlace, Map<string, WrappedEntry>>,
    place: WrappedPlace,
  ): Promise<WrappedKey> {
    const context = this.context(keyring, version);
    const other: WrappedPlace = place === 'published' ? 'archive' : 'published';
    for (const candidate of [stored[place].get(version), stored[other].get(version), this.made.get(version)?.wrapped]) {
      if (candidate && this.unwrapped.get(cacheKey(context, candidate))?.equals(key)) return { kek: candidate.kek, blob: candidate.blob };
    }
    const wrapped = await this.wrapper.wrap(key, context);
    this.remember(keyring, version, key, wrapped);
    return wrapped;
  }
}

/** A cached unwrap is valid only for the same KEK, blob and context: a blob moved to another version is asked of the service again. */
function cacheKey(context: WrapContext, w: WrappedKey): string {
  return JSON.stringify([w.kek, w.blob, context.keyring, context.version, context.tenant ?? null]);
}

export type { WrappedDocument, WrappedEntry, WrappedPlace } from './envelope-document.js';
