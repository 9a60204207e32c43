/**
 * Retired keys outlive the database backups that need them: retire keeps the material
 * (policy.retiredKeyRetentionDays), purge destroys it afterwards — only after a full decryption scan —
 * and backup pruning never removes the newest backup holding a key that still exists.
 */
import { mkdtempSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { pruneBackups, backupName } from '../../src/backup/files.js';
import { RefusedError } from '../../src/base/errors.js';
import { createDemoTable } from '../../src/core/demo.js';
import { purge } from '../../src/core/purge.js';
import { reconcileRegistry } from '../../src/core/registry.js';
import { generate } from '../../src/core/rotation/generate.js';
import { reencrypt } from '../../src/core/rotation/reencrypt.js';
import { dualKey, promote, retire } from '../../src/core/rotation/steps.js';
import { syncKeystore } from '../../src/core/rotation/sync.js';
import { verify } from '../../src/core/rotation/verify.js';
import { AesGcmV1Codec } from '../../src/crypto/codec.js';
import { generateKey } from '../../src/crypto/keys.js';
import { listAudit, listVersions } from '../../src/rotation/store.js';
import { openTestContext } from '../helpers/context.js';
import { DIALECTS, dialectAvailable, perTestDatabase } from '../helpers/databases.js';

const codec = new AesGcmV1Codec();
const DAY = 86_400_000;

for (const dialect of DIALECTS) {
  describe.skipIf(!dialectAvailable(dialect))(`retired-key retention on ${dialect}`, () => {
    const t = perTestDatabase(dialect);

    it('retire keeps the key; purge destroys it only after the retention, and never while a value needs it', async () => {
      let clock = Date.UTC(2027, 0, 1);
      const ctx = await openTestContext(t.db, {
        extraConfig:
          'targets:\n  - table: customers\n    columns: [email, phone, notes]\npolicy:\n  minPropagationSeconds: 0\n  rollbackWindowDays: 0\n  retiredKeyRetentionDays: 30\n',
        now: () => new Date(clock),
      });
      t.cleanup(() => ctx.db.close());
      const key = generateKey();
      await ctx.keystore.write({ keyring: 'default', primary: 'v1', keys: new Map([['v1', key]]) }, null, 'create');
      await reconcileRegistry(ctx);
      await createDemoTable(ctx.db, { rows: 20, version: 'v1', key, codec, replace: false });
      await generate(ctx, { emergency: false });
      await dualKey(ctx);
      await reencrypt(ctx, { dryRun: false, cryptoWorkers: 0 });
      await verify(ctx, {});
      await promote(ctx);
      await retire(ctx, {});
      const archived = async () => [...(await ctx.keystore.readArchive('default')).doc.keys].map(([v, a]) => `${v}:${a.status}`);
      expect(await archived()).toEqual(['v1:retired']);
      expect((await listVersions(ctx.db, 'default')).find((v) => v.version === 'v1')).toMatchObject({ state: 'retired', material: 'present' });

      // Backdating the retirement in the database does not make the key due: the registry no longer
      // matches its audited digest, and purge refuses.
      const retiredAt = (await ctx.db.knex('keyctl_key_versions').where({ version: 'v1' }).first()).state_changed_at;
      await ctx.db
        .knex('keyctl_key_versions')
        .where({ version: 'v1' })
        .update({ state_changed_at: ctx.db.adapter.toDbTime(new Date(Date.UTC(2000, 0, 1))) });
      await expect(purge(ctx)).rejects.toThrow(/changed outside keyctl/);
      expect(await archived()).toEqual(['v1:retired']);
      await ctx.db.knex('keyctl_key_versions').where({ version: 'v1' }).update({ state_changed_at: retiredAt });

      clock += 29 * DAY;
      expect((await purge(ctx)).destroyed).toEqual([]);
      expect(await archived()).toEqual(['v1:retired']);

      // A value only v1 can read (written under v1 after all) blocks the purge.
      const v1Value = codec.encrypt('late writer', 'v1', key);
      await ctx.db.knex('customers').where({ id: 3 }).update({ notes: v1Value });
      clock += 2 * DAY;
      await expect(purge(ctx)).rejects.toThrow(RefusedError);
      expect(await archived()).toEqual(['v1:retired']);
      expect((await listAudit(ctx.db, 'default')).at(-1)).toMatchObject({ action: 'purge', outcome: 'refused' });

      const v2 = (await ctx.keystore.read())!.doc.keys.get('v2')!;
      await ctx.db
        .knex('customers')
        .where({ id: 3 })
        .update({ notes: codec.encrypt('late writer', 'v2', v2) });
      expect((await purge(ctx)).destroyed).toEqual(['v1']);
      expect(await archived()).toEqual([]);
      expect((await listVersions(ctx.db, 'default')).find((v) => v.version === 'v1')).toMatchObject({ state: 'retired', material: 'destroyed' });
      expect((await listAudit(ctx.db, 'default')).at(-1)).toMatchObject({ action: 'purge', outcome: 'ok' });
    });
  });
}

describe.skipIf(!dialectAvailable('sqlite'))('keystore sync on its own', () => {
  const t = perTestDatabase('sqlite');
  it('never removes a key from the keystore because the registry says destroyed, without an audited destruction', async () => {
    const ctx = await openTestContext(t.db, { extraConfig: 'targets:\n  - table: customers\n    columns: [email]\npolicy:\n  minPropagationSeconds: 0\n' });
    t.cleanup(() => ctx.db.close());
    const key = generateKey();
    await ctx.keystore.write({ keyring: 'default', primary: 'v1', keys: new Map([['v1', key]]) }, null, 'create');
    await reconcileRegistry(ctx);
    await createDemoTable(ctx.db, { rows: 5, version: 'v1', key, codec, replace: false });
    await generate(ctx, { emergency: false });
    await dualKey(ctx);
    await ctx.db.knex('keyctl_key_versions').where({ version: 'v1' }).update({ state: 'retired', material: 'destroyed' });
    // Straight to the sync (past the registry-integrity check every command makes first).
    await expect(syncKeystore(ctx)).rejects.toThrow(/no audited retire, rollback or purge destroyed it/);
    expect([...(await ctx.keystore.read())!.doc.keys.keys()].sort()).toEqual(['v1', 'v2']);
  });
});

describe('backup pruning', () => {
  it('never removes a backup it is told still holds a needed key, however old', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'keyctl-prune-'));
    const now = new Date(Date.UTC(2027, 5, 1));
    const names: string[] = [];
    for (const daysAgo of [100, 50, 3, 2, 1]) {
      const at = new Date(now.getTime() - daysAgo * DAY);
      const name = backupName('default', at);
      writeFileSync(path.join(dir, name), 'x');
      utimesSync(path.join(dir, name), at, at);
      names.push(name);
    }
    const r = await pruneBackups(dir, 'default', now, 7, 3, new Set([names[0]!]));
    // The 100-day-old one holds a key no newer backup holds; the 50-day-old one goes.
    expect(r.deleted).toEqual([names[1]]);
  });
});
