/**
 * What core operations receive instead of reaching for globals: the database, the keystore,
 * the configuration, a clock, who is acting, and somewhere to say what is happening.
 */
import type { LoadedConfig } from '../config/load.js';
import type { Db } from '../db/connect.js';
import type { Keystore } from '../keystore/types.js';
import type { Logger } from '../base/logger.js';

export { silentLogger, type Logger } from '../base/logger.js';

export interface CoreContext {
  config: LoadedConfig;
  db: Db;
  keystore: Keystore;
  now: () => Date;
  /** "user@host", or KEYCTL_ACTOR. Recorded in the audit table. */
  actor: string;
  log: Logger;
  /** Opens the keystore another configuration names (a tenant's, config/tenancy); absent: tenants cannot be reached. */
  keystoreFor?: (config: LoadedConfig) => Keystore;
}
