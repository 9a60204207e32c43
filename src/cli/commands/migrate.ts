/** `keyctl migrate`: create or upgrade keyctl's own tables. */
import { loadConfig } from '../../config/load.js';
import { ExitCode } from '../../base/exit-codes.js';
import { openDatabase } from '../../db/connect.js';
import { migrate, releaseMigrationLock } from '../../db/migrations.js';
import type { CliRuntime } from '../runtime.js';
import type { MigrateOptions } from '../specs.js';

export async function run(rt: CliRuntime, flags: MigrateOptions): Promise<number> {
  const config = loadConfig({ explicitPath: rt.flags.config, env: rt.env, cwd: rt.cwd });
  for (const warning of config.warnings ?? []) rt.output.warn(warning);
  const db = await openDatabase(config.database, { baseDir: config.baseDir, mustExist: true });
  try {
    if (flags.unlock) {
      await releaseMigrationLock(db);
      rt.output.info(`released keyctl's migration lock in ${db.endpoint.description}`);
    }
    const result = await migrate(db);
    rt.output.result({ applied: result.applied, total: result.total, database: db.endpoint.description }, () =>
      result.applied.length > 0
        ? `applied ${result.applied.length} migration(s) to ${db.endpoint.description}: ${result.applied.join(', ')}`
        : `${db.endpoint.description}: keyctl tables are up to date (${result.total} migration(s))`,
    );
  } finally {
    await db.close();
  }
  return ExitCode.OK;
}
