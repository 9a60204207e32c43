/** Every keyctl command, in the order `keyctl --help` lists them. */
import type { CommandSpec } from '../spec.js';
import { audit } from './audit.js';
import { backup } from './backup.js';
import { dualKey } from './dual-key.js';
import { generate } from './generate.js';
import { init } from './init.js';
import { migrate } from './migrate.js';
import { promote } from './promote.js';
import { purge } from './purge.js';
import { recoverTest } from './recover-test.js';
import { reencrypt } from './reencrypt.js';
import { restore } from './restore.js';
import { retire } from './retire.js';
import { rollback } from './rollback.js';
import { runbook } from './runbook.js';
import { status } from './status.js';
import { verify } from './verify.js';

export const COMMANDS: readonly CommandSpec[] = [
  init,
  status,
  generate,
  dualKey,
  reencrypt,
  verify,
  backup,
  recoverTest,
  restore,
  promote,
  retire,
  rollback,
  purge,
  audit,
  runbook,
  migrate,
];
