/**
 * What every command handler gets from the CLI layer: parsed global flags, the output, the
 * environment, the terminal (input, width, signals, an immediate exit) and helpers to open the
 * configured database and keystore. Handlers touch no `process.*`: main builds all of this from
 * the MainIO that bin/keyctl.js (or a test) passes in.
 */
import os from 'node:os';
import type { Logger } from '../base/logger.js';
import type { CoreContext } from '../core/context.js';
import type { Output } from '../ui/output.js';

export interface GlobalFlags {
  config?: string;
  json: boolean;
  color: boolean;
  /** --actor: who is acting, for the audit record. */
  actor?: string;
  /**
   * Set for commands that act on one keyring (docs/tenants.md): --tenant ID names the tenant;
   * `all` (--all-tenants) is handled by main, which runs the command once per tenant.
   */
  tenancy?: { tenant?: string; all: boolean; allowShredded?: boolean };
}

export type Signal = 'SIGINT' | 'SIGTERM';

export interface CliRuntime {
  flags: GlobalFlags;
  output: Output;
  env: NodeJS.ProcessEnv;
  cwd: string;
  stdinIsTTY: boolean;
  /** The width of the terminal on stderr now, in columns; 0 when unknown or not a terminal. */
  columns: () => number;
  /** Ask one question on the terminal and return the line typed (stdin must be a terminal, or --yes given). */
  ask: (question: string) => Promise<string>;
  /** Call `handler` on each SIGINT/SIGTERM until the returned function is called (instead of dying). */
  onSignal: (signal: Signal, handler: (signal: Signal) => void) => () => void;
  /** Leave now with `status`, not waiting for the command to return (a second Ctrl-C). */
  exitNow: (status: number) => void;
  now: () => Date;
  /**
   * Run another keyctl command in this process, with its normal output and progress, and the same
   * --config, --actor and --no-color; returns its exit status (runbooks use this).
   */
  invoke: (args: string[]) => Promise<number>;
}

/** --actor, else KEYCTL_ACTOR, else the OS user@host. */
export function actorName(env: NodeJS.ProcessEnv, flag?: string): string {
  if (flag) return flag;
  if (env.KEYCTL_ACTOR) return env.KEYCTL_ACTOR;
  let user = env.USER ?? env.LOGNAME ?? 'unknown';
  try {
    user = os.userInfo().username;
  } catch {
    // no passwd entry (containers): keep the environment's idea of the user
  }
  return `${user}@${os.hostname()}`;
}

/** What opening a core context needs of the runtime (a worker thread has no more than this). */
export type ContextRuntime = Pick<CliRuntime, 'flags' | 'env' | 'cwd' | 'now'> & { output: Logger };

/** Load config, open keystore and database, apply keyctl's migrations. Caller must close(). */
export async function openCoreContext(rt: ContextRuntime): Promise<CoreContext & { close(): Promise<void> }> {
  const [{ loadConfig }, { openKeystore }, { openDatabase }, { migrate }] = await Promise.all([
    import('../config/load.js'),
    import('../keystore/index.js'),
    import('../db/connect.js'),
    import('../db/migrations.js'),
  ]);
  const base = loadConfig({ explicitPath: rt.flags.config, env: rt.env, cwd: rt.cwd });
  for (const warning of base.warnings ?? []) rt.output.warn(warning);
  const config = await configFor(rt, base);
  // A keystore with storage: database reads this command's own connection, once migrated.
  let ready: (db: import('../db/connect.js').Db) => void = () => undefined;
  const migrated = new Promise<import('../db/connect.js').Db>((resolve) => (ready = resolve));
  const keystoreFor = (c: typeof config) => openKeystore(c, rt.env, rt.output, { db: () => migrated });
  const keystore = keystoreFor(config);
  const db = await openDatabase(config.database, { baseDir: config.baseDir, mustExist: true });
  try {
    const result = await migrate(db);
    ready(db);
    if (result.applied.length > 0) rt.output.info(`applied keyctl migrations: ${result.applied.join(', ')}`);
    if (config.tenant !== undefined) await checkTenant(db, config.tenant, rt.flags.tenancy?.allowShredded === true);
  } catch (err) {
    await db.close();
    throw err;
  }
  return {
    config,
    db,
    keystore,
    now: rt.now,
    actor: actorName(rt.env, rt.flags.actor),
    log: rt.output,
    keystoreFor,
    close: () => db.close(),
  };
}

/** --tenant ID names a tenant keyctl made a keyring for (and, for most commands, has not shredded). */
async function checkTenant(db: import('../db/connect.js').Db, id: string, allowShredded: boolean): Promise<void> {
  const [{ getTenantRow }, { shredProven }, { RefusedError }, { formatTime }] = await Promise.all([
    import('../rotation/store.js'),
    import('../core/tenants.js'),
    import('../base/errors.js'),
    import('../base/format.js'),
  ]);
  const row = await getTenantRow(db, id);
  if (!row) throw new RefusedError(`tenant ${id} has no keyring`, `create it with: keyctl tenant add ${id}   (keyctl tenant list shows the tenants)`);
  // Shredded on keyctl's evidence, not keyctl_tenants' word (status reports a row that disagrees).
  if (row.shreddedAt && !allowShredded && (await shredProven(db, row.keyring)))
    throw new RefusedError(
      `tenant ${id} was shredded ${formatTime(row.shreddedAt)}: its keys are destroyed and its values cannot be read any more`,
      `keyctl status --tenant ${id} and keyctl audit --tenant ${id} still show its state and history`,
    );
}

/**
 * The configuration a command acts on: with tenancy, a command on one keyring needs --tenant ID
 * (its view: the tenant's keyring and rows); without tenancy, --tenant is refused.
 */
async function configFor(rt: ContextRuntime, config: import('../config/load.js').LoadedConfig): Promise<import('../config/load.js').LoadedConfig> {
  const t = rt.flags.tenancy;
  if (!t) return config;
  const { UsageError } = await import('../base/errors.js');
  if (!config.tenancy) {
    if (t.tenant !== undefined || t.all)
      throw new UsageError(
        `${t.all ? '--all-tenants' : `--tenant ${t.tenant}`}: ${config.file} has no tenancy: section, so it has one keyring and no tenants`,
        'run the command without it, or configure tenancy: (docs/tenants.md)',
      );
    return config;
  }
  if (t.tenant === undefined)
    throw new UsageError(
      `${config.file} keeps a keyring per tenant (tenancy:): say which with --tenant ID, or --all-tenants`,
      'keyctl tenant list shows the tenants',
    );
  return (await import('../config/tenancy.js')).tenantView(config, t.tenant);
}

/** Run `fn` with an open context, closing the database afterwards whatever happens. */
export async function withCoreContext<T>(rt: CliRuntime, fn: (ctx: CoreContext) => Promise<T>): Promise<T> {
  const ctx = await openCoreContext(rt);
  try {
    return await fn(ctx);
  } finally {
    try {
      // After the command's audit rows have committed: anchor the new head outside the database.
      await (await import('../core/audit.js')).anchorAfterCommand(ctx);
    } finally {
      await ctx.close();
    }
  }
}
