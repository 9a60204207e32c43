/**
 * `keyctl init`: writes a working keyctl.yaml on the embedded default (SQLite + file keystore),
 * creates key v1 (or adopts an existing key), prepares the database and, with --demo, a
 * customers table of encrypted sample data. The config file is written last, so a failure
 * half-way leaves no config pointing at something that does not exist; running init again
 * picks up the keyring already created.
 */
import { accessSync, existsSync, readFileSync, constants as fsConstants } from 'node:fs';
import path from 'node:path';
import { formatCount } from '../base/format.js';
import { expandEnv, parseConfig, resolveConfigPath, type LoadedConfig } from '../config/load.js';
import { AesGcmV1Codec } from '../crypto/codec.js';
import { fingerprint, generateKey } from '../crypto/keys.js';
import { type Db, openDatabase } from '../db/connect.js';
import { dialectFor, dialectForConnection, type Dialect } from '../db/dialects/index.js';
import { migrate } from '../db/migrations.js';
import { hasLiteralPassword, redactUrl } from '../db/redact.js';
import { openKeystore } from '../keystore/index.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { appendAudit } from '../rotation/store.js';
import { anchorAuditHead } from './audit-anchor.js';
import type { CoreContext, Logger } from './context.js';
import { createDemoTable, DEMO_TARGET, DEMO_TENANT_COLUMN, type DemoTenant } from './demo.js';
import { createDemoTenants } from './tenants.js';
import { KeyctlError, RefusedError, UsageError } from '../base/errors.js';
import { reconcileRegistry } from './registry.js';

export interface InitOptions {
  configFile: string;
  force: boolean;
  /**
   * Use the keyctl.yaml that is already there (written by hand, e.g. for an AWS or Vault
   * keystore) instead of writing one: create or adopt the keyring in its keystore and prepare
   * its database. The file is left untouched.
   */
  existingConfig?: boolean;
  demo: boolean;
  rows: number;
  /** With demo: per-tenant keyrings, this many tenants (t001, t002, …) sharing the rows. */
  tenants?: number;
  /** An existing key to adopt as v1 instead of generating one. */
  adoptKey?: { source: string; key: Buffer };
  /** database.connection to write: a SQLite path (default ./keyctl.db) or a postgres:// / mysql:// URL, may be ${VAR}. */
  database?: string;
  keyring?: string;
  env: NodeJS.ProcessEnv;
  now: () => Date;
  actor: string;
  log: Logger;
}

export interface InitResult {
  configFile: string;
  /** False with --existing-config: the file was read, not written. */
  configWritten: boolean;
  keyring: string;
  keystore: string;
  primary: string;
  fingerprint: string;
  keySource: 'generated' | 'adopted' | 'existing';
  database: string;
  /** The environment variable keyctl.yaml reads database.connection from (set it for every later command), or null. */
  databaseEnv: string | null;
  demoRows: number | null;
  /** Demo tenants created (init --demo --tenants N), or null. */
  tenants: number | null;
}

/** Where init puts a database URL that came with a password: the file names the variable only. */
export const DATABASE_URL_VAR = 'DATABASE_URL';

export function clientFor(connection: string): Dialect {
  return dialectForConnection(connection).dialect;
}

export function renderConfig(opts: { client: string; connection: string; keyring: string; demo: boolean; tenancy?: boolean }): string {
  const targets = opts.demo
    ? `targets:
  - table: ${DEMO_TARGET.table}
    primaryKey: ${DEMO_TARGET.primaryKey}
    columns: [${DEMO_TARGET.columns.join(', ')}]
`
    : `targets: []
  # - table: customers        # a table with encrypted columns
  #   primaryKey: id
  #   columns: [email, phone, notes]
`;
  return `# keyctl configuration. Reference: docs/configuration.md
# Secrets never belong here: reference them as \${ENV_VAR} instead.
database:
  client: ${opts.client}              # sqlite | pg | mysql
  connection: ${JSON.stringify(opts.connection)}  # SQLite file (relative to this file) or a URL, may be \${DATABASE_URL}
keystore:
  provider: file              # file | env | aws-secrets-manager | vault | aws-kms | vault-transit (docs/keystores.md)
  path: .keyctl/keyring.json  # created 0600 in a 0700 directory
keyring: ${opts.keyring}
${
  opts.tenancy
    ? `tenancy:                      # a keyring per tenant (docs/tenants.md)
  column: ${DEMO_TENANT_COLUMN}           # in every target table: whose row it is
  keyring: "tenant-{tenant}"  # each tenant's keyring name
`
    : ''
}${targets}policy:
  rotationIntervalDays: 90    # status --check fails when the primary key is older
  minPropagationSeconds: ${opts.demo ? '0    # demo: no wait. In production: at least the time your applications take to reload the keyring' : '300  # wait between generate and dual-key so every reader has the new key'}
  rollbackWindowDays: 30      # how long promote keeps the old key for rollback
  retiredKeys: destroy        # destroy | archive
  retiredKeyRetentionDays: 400  # destroy: keep retired keys this long for old database backups, then keyctl purge
`;
}

export async function initProject(opts: InitOptions): Promise<InitResult> {
  const configFile = opts.configFile;
  if (opts.existingConfig && !existsSync(configFile)) {
    throw new UsageError(
      `--existing-config: ${configFile} does not exist`,
      'write keyctl.yaml first (docs/configuration.md, docs/keystores.md), or run `keyctl init` without --existing-config to have one written',
    );
  }
  if (opts.existingConfig && (opts.force || opts.database || opts.keyring)) {
    throw new UsageError(
      '--existing-config takes database and keyring from the file; --force, --database and --keyring do not apply',
      'edit keyctl.yaml instead',
    );
  }
  if (existsSync(configFile) && !opts.force && !opts.existingConfig) {
    throw new RefusedError(
      `${configFile} already exists`,
      'keyctl is already set up here: run `keyctl status`.\nTo rewrite the config file (keys and database are kept), run `keyctl init --force`',
    );
  }
  if (!Number.isInteger(opts.rows) || opts.rows < 0) throw new UsageError(`--rows must be a whole number ≥ 0, found ${opts.rows}`);
  if (opts.tenants !== undefined && !opts.demo)
    throw new UsageError('--tenants goes with --demo (demo data spread over per-tenant keyrings)', 'keyctl init --demo --tenants 3 --rows 3000');
  if (opts.tenants !== undefined && (!Number.isInteger(opts.tenants) || opts.tenants < 1 || opts.tenants > 100_000))
    throw new UsageError(`--tenants must be a whole number from 1 to 100000, found ${opts.tenants}`);
  const configDir = path.dirname(configFile);
  try {
    accessSync(configDir, fsConstants.W_OK);
  } catch {
    throw new UsageError(
      `cannot write the config file: directory ${configDir} does not exist or is not writable`,
      'create the directory first, or run init somewhere you can write',
    );
  }

  const { connection, env } = keepPasswordOutOfFile(opts.database ?? './keyctl.db', opts.env, opts.log);
  const text = opts.existingConfig
    ? readFileSync(configFile, 'utf8')
    : renderConfig({
        client: clientFor(expandEnv(connection, env)),
        connection,
        keyring: opts.keyring ?? 'default',
        demo: opts.demo,
        tenancy: opts.tenants !== undefined,
      });
  // Validate what we are about to write exactly as every later command will read it.
  const config: LoadedConfig = parseConfig(text, configFile, env);
  if (!opts.existingConfig) for (const warning of config.warnings ?? []) opts.log.warn(warning);

  // The database is opened (and migrated) when first needed: by a keystore with storage:
  // database, else below, after the keystore checks, so that a refusal there leaves no file behind.
  let opened: Promise<Db> | undefined;
  const database = (): Promise<Db> =>
    (opened ??= openDatabase(config.database, { baseDir: config.baseDir }).then(async (db) => {
      try {
        await migrate(db);
      } catch (err) {
        await db.close();
        throw err;
      }
      return db;
    }));
  const keystore = openKeystore(config, env, opts.log, { db: database });
  let existing: Awaited<ReturnType<typeof keystore.read>>;
  try {
    existing = await keystore.read();
    if (existing && opts.adoptKey && !existing.doc.keys.get('v1')?.equals(opts.adoptKey.key)) {
      throw new RefusedError(
        `${keystore.describe()} already exists with a different v1 than the key in ${opts.adoptKey.source}`,
        'keyctl never overwrites existing keys: move the keyring file away first if you really mean to replace it',
      );
    }
    if (existing && existing.doc.keyring !== config.keyring) {
      throw new RefusedError(
        `${keystore.describe()} holds keyring "${existing.doc.keyring}", not "${config.keyring}"`,
        `use --keyring ${existing.doc.keyring}, or another keystore path`,
      );
    }
  } catch (err) {
    // A keystore in the database opened it: close it, or its pool keeps the process alive.
    if (opened) await (await opened.catch(() => null))?.close();
    throw err;
  }

  // Connect before creating any key, so a wrong database URL leaves nothing behind.
  const sqliteFile = dialectFor(config.database.client).embedded ? resolveConfigPath(config, config.database.connection) : null;
  const db = await database();
  try {
    let keySource: InitResult['keySource'];
    let primary: string;
    let key: Buffer;
    if (existing) {
      primary = existing.doc.primary;
      key = existing.doc.keys.get(primary)!;
      keySource = 'existing';
      opts.log.info(`using the existing keyring in ${keystore.describe()} (primary ${primary})`);
    } else {
      key = opts.adoptKey?.key ?? (keystore.newKey ? await keystore.newKey(config.keyring, 'v1') : generateKey());
      primary = 'v1';
      await keystore.write({ keyring: config.keyring, primary, keys: new Map([[primary, key]]) }, null, 'create the keyring');
      keySource = opts.adoptKey ? 'adopted' : 'generated';
      opts.log.info(
        opts.adoptKey ? `adopted the key from ${opts.adoptKey.source} as v1 in ${keystore.describe()}` : `created key v1 in ${keystore.describe()}`,
      );
    }
    const ctx: CoreContext = { config, db, keystore, now: opts.now, actor: opts.actor, log: opts.log };
    await reconcileRegistry(ctx);
    let demoRows: number | null = null;
    if (opts.demo) {
      const exists = await db.knex.schema.hasTable(DEMO_TARGET.table);
      if (exists && !opts.force) {
        throw new RefusedError(
          `table "${DEMO_TARGET.table}" already exists in ${db.endpoint.description}`,
          'run `keyctl init --demo --force` to drop and recreate it (its rows are lost), or use another database',
        );
      }
      let tenants: DemoTenant[] | undefined;
      if (opts.tenants !== undefined) {
        if (config.tenancy?.column !== DEMO_TENANT_COLUMN)
          throw new UsageError(
            `--tenants: the demo table keeps its tenant in column ${DEMO_TENANT_COLUMN}, and ${configFile} has ${config.tenancy ? `tenancy.column: ${config.tenancy.column}` : 'no tenancy: section'}`,
            `set tenancy: { column: ${DEMO_TENANT_COLUMN} } in the file, or run init --demo --tenants without --existing-config`,
          );
        tenants = await createDemoTenants({ ...ctx, keystoreFor: (c) => openKeystore(c, env, opts.log, { db: database }) }, opts.tenants);
        opts.log.info(`creating ${formatCount(opts.rows)} demo rows in ${DEMO_TARGET.table} over ${formatCount(tenants.length)} tenants`);
      } else opts.log.info(`creating ${formatCount(opts.rows)} demo rows in ${DEMO_TARGET.table} under ${primary}`);
      await createDemoTable(db, { rows: opts.rows, version: primary, key, codec: new AesGcmV1Codec(), replace: exists, ...(tenants ? { tenants } : {}) });
      demoRows = opts.rows;
    }
    await appendAudit(
      db,
      {
        keyring: config.keyring,
        action: 'init',
        actor: opts.actor,
        newVersion: primary,
        outcome: 'ok',
        details: { keySource, fingerprint: fingerprint(key), keystore: keystore.provider, demoRows },
      },
      opts.now(),
    );
    // The first anchor, so the history is anchored from its first rows (a database-only attacker
    // could otherwise replace it before any later command anchors it).
    if (keystore.writable) {
      const anchored = await anchorAuditHead({ db, keystore, now: opts.now }, config.keyring).catch((err: unknown) => ({ status: 'failed' as const, err }));
      if (anchored.status === 'failed')
        opts.log.warn(`the audit anchor was not written: ${(anchored.err as Error).message} — run \`keyctl audit --anchor\` when the keystore answers`);
      else if (anchored.status === 'refused') opts.log.warn(`the audit anchor was not written: ${anchored.reason} — ${anchored.hint}`);
    }
    if (!opts.existingConfig)
      // Readable by others only when it holds no secret (a ${VAR:-default} may still carry one).
      await writeFileAtomic(configFile, text, hasLiteralPassword(connection) ? 0o600 : 0o644).catch((err: NodeJS.ErrnoException) => {
        throw new KeyctlError('io', 'USAGE', `cannot write ${configFile}: ${err.code ?? err.message}`, 'check that the directory exists and is writable');
      });
    return {
      configFile,
      configWritten: !opts.existingConfig,
      keyring: config.keyring,
      keystore: keystore.describe(),
      primary,
      fingerprint: fingerprint(key),
      keySource,
      database: sqliteFile ? path.relative(path.dirname(configFile), sqliteFile) || sqliteFile : db.endpoint.description,
      databaseEnv: opts.existingConfig ? null : (/^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$/.exec(connection)?.[1] ?? null),
      demoRows,
      tenants: opts.tenants ?? null,
    };
  } finally {
    await db.close();
  }
}

/**
 * A --database URL with a password of its own is written as ${DATABASE_URL}, and this run reads it
 * from there, so the password never lands in keyctl.yaml; the operator is told what to export.
 * When DATABASE_URL already holds another URL, init refuses rather than point the file at it.
 */
function keepPasswordOutOfFile(database: string, env: NodeJS.ProcessEnv, log: Logger): { connection: string; env: NodeJS.ProcessEnv } {
  if (database.includes('${') || !hasLiteralPassword(database)) return { connection: database, env };
  const name = DATABASE_URL_VAR;
  const current = env[name];
  if (current && current !== database) {
    throw new UsageError(
      `--database holds a password, which keyctl keeps out of keyctl.yaml by writing \${${name}}, but ${name} is already set to another URL (${redactUrl(current)})`,
      `to use ${name} as it is, run: keyctl init --database '\${${name}}'\nelse export ${name} with the URL you mean (then the same command), or unset ${name}`,
    );
  }
  log.info(
    `keyctl.yaml reads the database URL from $${name}, so its password stays out of the file.\n` +
      `Before the next keyctl command: export ${name}='${redactUrl(database)}' (your password in place of ****),\n` +
      `e.g. from your secret manager. Next time, pass --database '\${${name}}' in single quotes: a password on the command line shows in ps and shell history.`,
  );
  return { connection: `\${${name}}`, env: { ...env, [name]: database } };
}
