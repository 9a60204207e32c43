/** kill -9 at a random moment of a running `keyctl reencrypt`, for the resume tests. */
import { spawn } from 'node:child_process';
import type { Knex } from 'knex';
import { KEYCTL_BIN } from './cli.js';

/** Rows scanned as the project's checkpoints record them, every rotation together. */
export async function rowsScanned(db: Knex): Promise<number> {
  const row = (await db('keyctl_reencrypt_checkpoints')
    .sum({ n: 'rows_scanned' })
    .first()
    .catch(() => undefined)) as { n?: unknown } | undefined;
  return Number(row?.n ?? 0);
}

/** What killMidRun saw: whether it killed the run, how often it read the checkpoints, the last count read. */
export interface KillOutcome {
  killed: boolean;
  polls: number;
  lastSeen: number;
}

/**
 * Start `keyctl <args>` and SIGKILL it once the checkpoints show at least `threshold` rows scanned —
 * a random point in the middle of the run, whatever the machine's speed — plus a random few ms, so
 * the kill lands anywhere inside a batch.
 */
export async function killMidRun(args: string[], cwd: string, env: NodeJS.ProcessEnv, db: Knex, threshold: number): Promise<KillOutcome> {
  const child = spawn(process.execPath, [KEYCTL_BIN, ...args], { cwd, env: { ...process.env, ...env }, stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  let running = true;
  void exited.then(() => (running = false));
  const outcome: KillOutcome = { killed: false, polls: 0, lastSeen: 0 };
  while (running) {
    outcome.polls++;
    outcome.lastSeen = await rowsScanned(db);
    if (outcome.lastSeen >= threshold) {
      await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 15)));
      outcome.killed = running;
      child.kill('SIGKILL');
      break;
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  await exited;
  return outcome;
}
