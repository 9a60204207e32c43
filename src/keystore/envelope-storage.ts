/**
 * Where an envelope keystore keeps its two documents of wrapped keys (the published keyring and
 * the archive), each read with a revision and replaced only by a compare-and-set against it:
 * - `file`: the wrapped keyring file and `<name>.archive.json`, as the file keystore writes its own;
 * - `database`: rows of keyctl's tables in the application database — `keyctl_wrapped_keys` (one
 *   row per version) under a head row in `keyctl_wrapped_heads` whose revision counter is the
 *   compare-and-set: a writer bumps it from the revision it read, in the transaction that replaces
 *   the rows, so two writers can never both pass (the "references only" model: no key in the clear).
 */
import type { Knex } from 'knex';
import { KeystoreConflictError } from '../base/errors.js';
import type { Db } from '../db/connect.js';
import { translateDbError } from '../db/errors.js';
import { TABLES } from '../db/migrations.js';
import { parseWrapped, serialiseWrapped, type WrappedDocument, type WrappedEntry, type WrappedPlace } from './envelope-document.js';
import { defaultArchivePath, PrivateFile } from './file.js';

export interface WrappedStorage {
  describe(): string;
  read(place: WrappedPlace): Promise<{ doc: WrappedDocument; revision: string } | null>;
  /** Replace `place`'s document if its revision is still `expectedRevision` (null: it must not exist); else KeystoreConflictError. */
  write(place: WrappedPlace, doc: WrappedDocument, provider: string, expectedRevision: string | null): Promise<void>;
  remove(place: WrappedPlace): Promise<void>;
}

export class FileWrappedStorage implements WrappedStorage {
  private readonly files: Record<WrappedPlace, PrivateFile>;

  constructor(readonly file: string) {
    this.files = { published: new PrivateFile(file, 'wrapped keyring file'), archive: new PrivateFile(defaultArchivePath(file), 'wrapped key archive') };
  }

  describe(): string {
    return this.file;
  }

  async read(place: WrappedPlace): Promise<{ doc: WrappedDocument; revision: string } | null> {
    const got = await this.files[place].read();
    if (!got) return null;
    return { doc: parseWrapped(got.text, `${this.files[place].what} ${this.files[place].file}`, place), revision: got.revision };
  }

  async write(place: WrappedPlace, doc: WrappedDocument, provider: string, expectedRevision: string | null): Promise<void> {
    await this.files[place].write(serialiseWrapped(doc, provider), expectedRevision);
  }

  async remove(place: WrappedPlace): Promise<void> {
    await this.files[place].remove();
  }
}

interface HeadRow {
  revision: number | string;
  primary_version: string | null;
  wrapping: string;
}

interface KeyRow {
  version: string;
  kek: string;
  blob: string;
  status: string | null;
  since: string | null;
}

export class DatabaseWrappedStorage implements WrappedStorage {
  constructor(
    private readonly keyring: string,
    private readonly db: () => Promise<Db>,
  ) {}

  describe(): string {
    return `${TABLES.wrappedKeys} (keyring ${this.keyring})`;
  }

  async read(place: WrappedPlace): Promise<{ doc: WrappedDocument; revision: string } | null> {
    const db = await this.db();
    // One transaction: the head and its rows as one writer left them.
    return this.guard(db, 'read', place, () =>
      db.knex.transaction(async (trx) => {
        // Shared lock on the head (PostgreSQL, MySQL): a writer's rows are not half seen under READ COMMITTED.
        const headQuery = trx(TABLES.wrappedHeads).where({ keyring: this.keyring, place }).first();
        const head = (await (db.adapter.embedded ? headQuery : headQuery.forShare())) as HeadRow | undefined;
        if (!head || head.wrapping === REMOVED) return null;
        const rows = (await trx(TABLES.wrappedKeys).where({ keyring: this.keyring, place }).select('version', 'kek', 'blob', 'status', 'since')) as KeyRow[];
        const keys: Record<string, Record<string, string>> = {};
        for (const r of rows) keys[r.version] = { kek: r.kek, blob: r.blob, ...(r.status ? { status: r.status } : {}), ...(r.since ? { since: r.since } : {}) };
        // Parsed as the file form is: the same checks, whoever wrote the rows.
        const text = JSON.stringify({
          format: 'keyctl-envelope/1',
          keyring: this.keyring,
          ...(head.primary_version ? { primary: head.primary_version } : {}),
          keys,
        });
        return { doc: parseWrapped(text, `${this.describe()}, ${place}`, place), revision: String(head.revision) };
      }),
    );
  }

  async write(place: WrappedPlace, doc: WrappedDocument, provider: string, expectedRevision: string | null): Promise<void> {
    const db = await this.db();
    await this.guard(db, 'write', place, () =>
      db.knex.transaction(async (trx) => {
        const at = { keyring: this.keyring, place };
        const fields = { primary_version: doc.primary ?? null, wrapping: provider };
        if (expectedRevision === null) {
          const head = (await trx(TABLES.wrappedHeads).where(at).first()) as HeadRow | undefined;
          if (!head) await trx(TABLES.wrappedHeads).insert({ ...at, revision: 1, ...fields });
          // A removed document's head stays, so its revisions are never handed out twice.
          else if (head.wrapping !== REMOVED || (await bump(trx, at, Number(head.revision), fields)) !== 1) throw conflict(place, 'already exists');
        } else if ((await bump(trx, at, Number(expectedRevision), fields)) !== 1) {
          throw conflict(place, 'was changed by someone else since keyctl read it');
        }
        await trx(TABLES.wrappedKeys).where(at).delete();
        const rows = [...doc.keys].map(([version, e]: [string, WrappedEntry]) => ({
          ...at,
          version,
          kek: e.kek,
          blob: e.blob,
          status: e.status ?? null,
          since: e.since ?? null,
        }));
        if (rows.length > 0) await trx(TABLES.wrappedKeys).insert(rows);
      }),
    );
  }

  async remove(place: WrappedPlace): Promise<void> {
    const db = await this.db();
    await this.guard(db, 'remove', place, () =>
      db.knex.transaction(async (trx) => {
        const at = { keyring: this.keyring, place };
        await trx(TABLES.wrappedKeys).where(at).delete();
        await trx(TABLES.wrappedHeads)
          .where(at)
          .update({ revision: trx.raw('revision + 1'), primary_version: null, wrapping: REMOVED });
      }),
    );
  }

  /** A conflict as a conflict (a racing creator's unique violation too); any other failure as the database's. */
  private async guard<T>(db: Db, what: string, place: WrappedPlace, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof KeystoreConflictError) throw err;
      if (db.adapter.isUniqueViolation(err)) throw conflict(place, 'was created by someone else at the same moment');
      // A busy SQLite snapshot, a deadlock or lock timeout: another writer got there; nothing was written.
      if (db.adapter.isRetryable(err) || db.adapter.isLockContention(err) || /^SQLITE_BUSY/.test(String((err as { code?: unknown })?.code ?? '')))
        throw conflict(place, 'was being changed by another writer at the same moment');
      throw translateDbError(err, db.endpoint, `${what} the wrapped keys (${TABLES.wrappedKeys}) in`);
    }
  }
}

/** The head of a removed document (destroyKeyring): kept, with its revision, so a stale writer still fails. */
const REMOVED = 'removed';

function bump(trx: Knex.Transaction, at: { keyring: string; place: WrappedPlace }, from: number, fields: Record<string, unknown>): Promise<number> {
  return trx(TABLES.wrappedHeads)
    .where({ ...at, revision: from })
    .update({ revision: from + 1, ...fields });
}

function conflict(place: WrappedPlace, what: string): KeystoreConflictError {
  return new KeystoreConflictError(
    `the ${place === 'published' ? 'wrapped keyring' : 'wrapped key archive'} ${what}`,
    'run the command again so it starts from the current keyring',
  );
}
