/**
 * `storage: database` of the envelope keystores (src/keystore/envelope-storage.ts) on every
 * dialect: the head row's revision is a compare-and-set — a stale writer and a second creator are
 * refused and change nothing — and rows round-trip as the file form does.
 */
import { describe, expect, it } from 'vitest';
import { KeystoreConflictError } from '../../src/base/errors.js';
import type { WrappedDocument } from '../../src/keystore/envelope-document.js';
import { DatabaseWrappedStorage } from '../../src/keystore/envelope-storage.js';
import { openTestContext } from '../helpers/context.js';
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
