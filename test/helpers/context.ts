/** Builds a CoreContext on a test database, as the CLI would, for integration tests. */
import path from 'node:path';
import type { LoadedConfig } from '../../src/config/load.js';
import { parseConfig } from '../../src/config/load.js';
import type { CoreContext } from '../../src/core/context.js';
import { silentLogger } from '../../src/core/context.js';
import { reconcileRegistry } from '../../src/core/registry.js';
import { generateKey } from '../../src/crypto/keys.js';
import { openDatabase, type Db } from '../../src/db/connect.js';
import { migrate } from '../../src/db/migrations.js';
import { FileKeystore } from '../../src/keystore/file.js';
import type { Keystore } from '../../src/keystore/types.js';
import type { TestDatabase } from './databases.js';

export function testConfig(tdb: TestDatabase, extra = ''): LoadedConfig {
  const text = `database:\n  client: ${tdb.dialect}\n  connection: ${JSON.stringify(tdb.connection)}\nkeystore:\n  provider: file\n  path: keyring.json\n${extra}`;
  return parseConfig(text, path.join(tdb.dir, 'keyctl.yaml'), {});
}

export async function openTestContext(
  tdb: TestDatabase,
  opts: { extraConfig?: string; keystore?: Keystore; now?: () => Date } = {},
): Promise<CoreContext & { db: Db }> {
  const config = testConfig(tdb, opts.extraConfig);
  const db = await openDatabase(config.database, { baseDir: config.baseDir });
  await migrate(db);
  return {
    config,
    db,
    keystore: opts.keystore ?? new FileKeystore(path.join(tdb.dir, 'keyring.json')),
    now: opts.now ?? (() => new Date()),
    actor: 'tester@test',
    log: silentLogger,
  };
}

/**
 * A context on the test's database whose keyring holds one key, v1 (returned), registered as a
 * CLI's first run would; closed with the test.
 */
export async function openWithKeyV1(
  t: { readonly db: TestDatabase; cleanup(...fns: Array<() => Promise<void>>): void },
  extraConfig: string,
): Promise<{ ctx: CoreContext & { db: Db }; k1: Buffer }> {
  const ctx = await openTestContext(t.db, { extraConfig });
  t.cleanup(() => ctx.db.close());
  const k1 = generateKey();
  await ctx.keystore.write({ keyring: 'default', primary: 'v1', keys: new Map([['v1', k1]]) }, null, 'create');
  await reconcileRegistry(ctx);
  return { ctx, k1 };
}
