/**
 * `storage: database` of the envelope keystores (src/keystore/envelope-storage.ts) on every
 * dialect: the head row's revision is a compare-and-set — a stale writer and a second creator are
 * refused and change nothing — and rows round-trip as the file form does.
 */
import { describe, expect, it } from 'vitest';
import { KeystoreConflictError } from '../../src/base/errors.js';
import type { WrappedDocument } from '../../src/keystore/envelope-document.js';
import { DatabaseWrappedStorage } from '../../src/keystore/envelope-storage.js';
import { openDatabase } from '../../src/db/connect.js';
import { TABLES } from '../../src/db/migrations.js';
import { openTestContext, testConfig } from '../helpers/context.js';
import { dialectAvailable, perTestDatabase } from '../helpers/databases.js';

const doc = (blob: string): WrappedDocument => ({
  keyring: 'payments',
  primary: 'v2',
  keys: new Map([
    ['v1', { kek: 'arn:aws:kms:eu-west-1:111122223333:key/a', blob: `${blob}1` }],
    ['v2', { kek: 'arn:aws:kms:eu-west-1:111122223333:key/a', blob: `${blob}2` }],
  ]),
});

for (const dialect of ['sqlite', 'pg', 'mysql'] as const) {
  describe.runIf(dialectAvailable(dialect))(`wrapped keys in the database (${dialect})`, () => {
    const t = perTestDatabase(dialect);

    it('compare-and-sets on the head revision: a stale writer and a second creator change nothing', async () => {
      const ctx = await openTestContext(t.db);
      t.cleanup(() => ctx.db.close());
      const a = new DatabaseWrappedStorage('payments', async () => ctx.db);
      const b = new DatabaseWrappedStorage('payments', async () => ctx.db);
      expect(await a.read('published')).toBeNull();
      await a.write('published', doc('A'), 'aws-kms', null);
      await expect(b.write('published', doc('B'), 'aws-kms', null)).rejects.toBeInstanceOf(KeystoreConflictError);
      const read = (await b.read('published'))!;
      expect(read.revision).toBe('1');
      expect(read.doc).toEqual(doc('A'));
      await a.write('published', doc('C'), 'aws-kms', read.revision);
      await expect(b.write('published', doc('D'), 'aws-kms', read.revision)).rejects.toBeInstanceOf(KeystoreConflictError);
      expect((await a.read('published'))!).toEqual({ doc: doc('C'), revision: '2' });
      // Another keyring's documents are its own.
      expect(await new DatabaseWrappedStorage('other', async () => ctx.db).read('published')).toBeNull();
      await a.remove('published');
      expect(await a.read('published')).toBeNull();
      // Revisions are not handed out again after a removal: a writer that read revision 2 still fails.
      await expect(b.write('published', doc('E'), 'aws-kms', '2')).rejects.toBeInstanceOf(KeystoreConflictError);
      await b.write('published', doc('F'), 'aws-kms', null);
      expect((await a.read('published'))!).toEqual({ doc: doc('F'), revision: '4' });
      await expect(a.write('published', doc('G'), 'aws-kms', null)).rejects.toBeInstanceOf(KeystoreConflictError);
    });
  });
}

// A writer that finds the head row locked by another writer's open transaction, and gives up
// waiting, is told of a conflict; nothing is written. PostgreSQL gives up at lock_timeout (SQLSTATE
// 55P03), MariaDB at innodb_lock_wait_timeout (ER_LOCK_WAIT_TIMEOUT), SQLite at its busy timeout
// (SQLITE_BUSY, 5 s).
for (const dialect of ['sqlite', 'pg', 'mysql'] as const) {
  describe.runIf(dialectAvailable(dialect))(`wrapped keys in the database: a writer blocked by another writer (${dialect})`, () => {
    const t = perTestDatabase(dialect);

    it('reports lock contention as a conflict and changes nothing', async () => {
      const ctx = await openTestContext(t.db);
      t.cleanup(() => ctx.db.close());
      const a = new DatabaseWrappedStorage('payments', async () => ctx.db);
      await a.write('published', doc('A'), 'aws-kms', null);
      const config = testConfig(t.db);
      // PostgreSQL: new sessions of this test's database wait at most 300 ms for a lock. MariaDB can
      // shorten the wait only per session (or for the whole server): the blocked writer gets one
      // connection, told to wait at most 1 s.
      if (dialect === 'pg') await ctx.db.knex.raw(`ALTER DATABASE ?? SET lock_timeout = '300ms'`, [new URL(t.db.connection).pathname.slice(1)]);
      const other = await openDatabase(dialect === 'mysql' ? { ...config.database, pool: { min: 1, max: 1 } } : config.database, { baseDir: config.baseDir });
      t.cleanup(() => other.close());
      if (dialect === 'mysql') await other.knex.raw('SET SESSION innodb_lock_wait_timeout = 1');
      const b = new DatabaseWrappedStorage('payments', async () => other);
      const holder = await ctx.db.knex.transaction();
      try {
        const head = holder(TABLES.wrappedHeads).where({ keyring: 'payments', place: 'published' });
        // SQLite locks the whole database for a write, and only for a write.
        if (dialect === 'sqlite') await head.update({ wrapping: 'aws-kms' });
        else await head.forUpdate().first();
        const err = await b.write('published', doc('B'), 'aws-kms', '1').catch((e: unknown) => e);
        expect(err).toBeInstanceOf(KeystoreConflictError);
        expect((err as Error).message).toContain('was being changed by another writer at the same moment');
      } finally {
        await holder.rollback();
      }
      expect(await a.read('published')).toEqual({ doc: doc('A'), revision: '1' });
      // Once the lock is gone the same write goes through: the conflict was the lock, not the revision.
      await b.write('published', doc('B'), 'aws-kms', '1');
      expect(await a.read('published')).toEqual({ doc: doc('B'), revision: '2' });
    }, 30_000);
  });
}
