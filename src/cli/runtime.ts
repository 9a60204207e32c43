/**
 * What every command handler gets from the CLI layer: parsed global flags, the output, the
 * environment, the terminal (input, width, signals, an immediate exit) and helpers to open the
 * configured database and keystore. Handlers touch no `process.*`: main builds all of this from
 * the MainIO that bin/keyctl.js (or a test) passes in.
 */
import os from 'node:os';
import type { CoreContext } from '../core/context.js';
import type { Output } from '../ui/output.js';

export interface GlobalFlags {
  config?: string;
  json: boolean;
  color: boolean;
  /** --actor: who is acting, for the audit record. */
  actor?: string;
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

/** Load config, open keystore and database, apply keyctl's migrations. Caller must close(). */
export async function openCoreContext(rt: CliRuntime): Promise<CoreContext & { close(): Promise<void> }> {
  const [{ loadConfig }, { openKeystore }, { openDatabase }, { migrate }] = await Promise.all([
    import('../config/load.js'),
    import('../keystore/index.js'),
    import('../db/connect.js'),
    import('../db/migrations.js'),
  ]);
  const config = loadConfig({ explicitPath: rt.flags.config, env: rt.env, cwd: rt.cwd });
  for (const warning of config.warnings ?? []) rt.output.warn(warning);
  const keystore = openKeystore(config, rt.env, rt.output);
  const db = await openDatabase(config.database, { baseDir: config.baseDir, mustExist: true });
  try {
    const result = await migrate(db);
    if (result.applied.length > 0) rt.output.info(`applied keyctl migrations: ${result.applied.join(', ')}`);
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
    close: () => db.close(),
  };
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
