/**
 * keyctl's own tables, created by versioned migrations (Knex's migrator with an in-code source,
 * recorded in keyctl_migrations and serialised by its lock table). Each step also checks before
 * it creates, so a step interrupted on MySQL (no transactional DDL) can simply be run again.
 */
import type { Knex } from 'knex';
import { auditRowHash, GENESIS_HASH } from './audit-hash.js';
import { auditFieldsOf } from './audit-fields.js';
import { DatabaseError } from '../base/errors.js';
import { translateDbError } from './errors.js';
import type { Db } from './connect.js';

export const TABLES = {
  keyVersions: 'keyctl_key_versions',
  rotations: 'keyctl_rotations',
  audit: 'rotation_audit',
  checkpoints: 'keyctl_reencrypt_checkpoints',
  auditHead: 'keyctl_audit_head',
  approvals: 'keyctl_approval_requests',
  approvalSignatures: 'keyctl_approval_signatures',
  tenants: 'keyctl_tenants',
  wrappedKeys: 'keyctl_wrapped_keys',
  wrappedHeads: 'keyctl_wrapped_heads',
} as const;

interface Migration {
  name: string;
  up(knex: Knex): Promise<void>;
}

async function createIfMissing(knex: Knex, table: string, build: (t: Knex.CreateTableBuilder) => void): Promise<void> {
  if (await knex.schema.hasTable(table)) return;
  await knex.schema.createTable(table, build);
}

const MIGRATIONS: Migration[] = [
  {
    name: '0001_registry_rotations_audit_checkpoints',
    async up(knex) {
      await createIfMissing(knex, TABLES.keyVersions, (t) => {
        t.string('keyring', 64).notNullable();
        t.string('version', 16).notNullable();
        t.integer('version_number').notNullable();
        // primary | decrypt-only | archived | retired
        t.string('state', 16).notNullable();
        t.string('fingerprint', 32).notNullable();
        t.boolean('compromised').notNullable().defaultTo(false);
        t.datetime('created_at', { precision: 3 }).notNullable();
        t.datetime('state_changed_at', { precision: 3 }).notNullable();
        t.primary(['keyring', 'version']);
      });
      await createIfMissing(knex, TABLES.rotations, (t) => {
        t.bigIncrements('id').primary();
        t.string('keyring', 64).notNullable();
        t.string('phase', 32).notNullable();
        t.string('old_version', 16).nullable();
        t.string('new_version', 16).nullable();
        t.boolean('emergency').notNullable().defaultTo(false);
        t.text('reason').nullable();
        // Equals keyring while the rotation is open, NULL once closed: the unique index allows at
        // most one open rotation per keyring on every dialect (MySQL has no partial indexes).
        t.string('open_keyring', 64).nullable().unique({ indexName: 'keyctl_rotations_one_open' });
        t.string('opened_by', 255).notNullable();
        t.datetime('opened_at', { precision: 3 }).notNullable();
        t.datetime('phase_changed_at', { precision: 3 }).notNullable();
        t.datetime('rollback_deadline', { precision: 3 }).nullable();
        t.datetime('closed_at', { precision: 3 }).nullable();
        t.index(['keyring', 'opened_at'], 'keyctl_rotations_keyring_opened');
      });
      await createIfMissing(knex, TABLES.audit, (t) => {
        t.bigIncrements('id').primary();
        t.bigInteger('rotation_id').nullable();
        t.string('keyring', 64).notNullable();
        t.string('action', 32).notNullable();
        t.string('from_phase', 32).nullable();
        t.string('to_phase', 32).nullable();
        t.string('actor', 255).notNullable();
        t.string('old_version', 16).nullable();
        t.string('new_version', 16).nullable();
        t.bigInteger('rows_affected').nullable();
        // ok | refused | failed | interrupted
        t.string('outcome', 16).notNullable();
        t.text('details').nullable();
        t.datetime('created_at', { precision: 3 }).notNullable();
        t.index(['keyring', 'created_at'], 'rotation_audit_keyring_created');
        t.index(['rotation_id'], 'rotation_audit_rotation');
      });
      await createIfMissing(knex, TABLES.checkpoints, (t) => {
        t.bigIncrements('id').primary();
        t.bigInteger('rotation_id').notNullable();
        t.string('table_name', 130).notNullable();
        t.string('shard', 16).notNullable().defaultTo('0/1');
        // JSON text of the last primary key value committed.
        t.text('cursor').nullable();
        t.bigInteger('rows_scanned').notNullable().defaultTo(0);
        t.bigInteger('rows_rewritten').notNullable().defaultTo(0);
        t.bigInteger('rows_failed').notNullable().defaultTo(0);
        t.boolean('completed').notNullable().defaultTo(false);
        t.datetime('updated_at', { precision: 3 }).notNullable();
        t.unique(['rotation_id', 'table_name', 'shard'], { indexName: 'keyctl_checkpoints_unique' });
      });
    },
  },
  {
    name: '0002_audit_hash_chain_and_key_publication',
    async up(knex) {
      await addColumnIfMissing(knex, TABLES.audit, 'seq', (t) => t.bigInteger('seq').nullable());
      await addColumnIfMissing(knex, TABLES.audit, 'prev_hash', (t) => t.string('prev_hash', 64).nullable());
      await addColumnIfMissing(knex, TABLES.audit, 'row_hash', (t) => t.string('row_hash', 64).nullable());
      // When the version's key was first published to readers (the propagation delay counts from here).
      await addColumnIfMissing(knex, TABLES.keyVersions, 'published_at', (t) => t.datetime('published_at', { precision: 3 }).nullable());
      // present | destroyed: whether the key's material still exists in the keystore (published or archived).
      await addColumnIfMissing(knex, TABLES.keyVersions, 'material', (t) => t.string('material', 16).notNullable().defaultTo('present'));
      await addColumnIfMissing(knex, TABLES.rotations, 'compromised_version', (t) => t.string('compromised_version', 16).nullable());
      await createIfMissing(knex, TABLES.auditHead, (t) => {
        t.string('keyring', 64).primary();
        t.bigInteger('seq').notNullable();
        t.string('last_hash', 64).notNullable();
      });
      // Chain the rows written before the chain existed, once, in id order.
      await backfillAuditChain(knex);
    },
  },
  {
    name: '0003_verify_evidence',
    async up(knex) {
      // The latest verify of the rotation since its last write pass: scope full | sample, outcome
      // passed | failed. promote needs a full, passed one (docs/rotation.md, "verification gate").
      await addColumnIfMissing(knex, TABLES.rotations, 'verify_scope', (t) => t.string('verify_scope', 16).nullable());
      await addColumnIfMissing(knex, TABLES.rotations, 'verify_outcome', (t) => t.string('verify_outcome', 16).nullable());
      await addColumnIfMissing(knex, TABLES.rotations, 'verified_at', (t) => t.datetime('verified_at', { precision: 3 }).nullable());
    },
  },
  {
    name: '0004_approvals',
    async up(knex) {
      // Two-person rule (docs/approvals.md). Nothing here is trusted by itself: every signature is
      // verified again, over the canonical text rebuilt from these columns, when an action uses it.
      await createIfMissing(knex, TABLES.approvals, (t) => {
        t.bigIncrements('id').primary();
        t.string('keyring', 64).notNullable();
        t.string('action', 16).notNullable();
        // The open rotation it is for, or NULL for a generate (then after_rotation: the keyring's latest rotation id, 0 for none).
        t.bigInteger('rotation_id').nullable();
        t.bigInteger('after_rotation').nullable();
        t.string('from_version', 16).notNullable();
        t.string('to_version', 16).notNullable();
        // An emergency rotation's step (generate --emergency marks the primary compromised).
        t.boolean('emergency').notNullable().defaultTo(false);
        t.string('nonce', 64).notNullable();
        t.text('reason').nullable();
        t.string('requested_by', 255).notNullable();
        t.datetime('requested_at', { precision: 3 }).notNullable();
        t.datetime('expires_at', { precision: 3 }).notNullable();
        // A break-glass record: the action ran first (emergency); the signatures come afterwards.
        t.boolean('break_glass').notNullable().defaultTo(false);
        t.datetime('consumed_at', { precision: 3 }).nullable();
        t.bigInteger('consumed_rotation').nullable();
        t.index(['keyring', 'action'], 'keyctl_approvals_keyring_action');
      });
      await createIfMissing(knex, TABLES.approvalSignatures, (t) => {
        t.bigIncrements('id').primary();
        t.bigInteger('request_id').notNullable();
        t.string('approver', 64).notNullable();
        t.string('fingerprint', 64).notNullable();
        t.text('signature').notNullable();
        t.datetime('signed_at', { precision: 3 }).notNullable();
        t.string('added_by', 255).notNullable();
        t.datetime('added_at', { precision: 3 }).notNullable();
        t.unique(['request_id', 'fingerprint'], { indexName: 'keyctl_approval_sigs_unique' });
      });
    },
  },
  {
    name: '0005_tenants',
    async up(knex) {
      // Per-tenant keyrings (docs/tenants.md): which tenants keyctl made keyrings for, and which it
      // shredded. The keys' own state stays in keyctl_key_versions, under the tenant's keyring.
      await createIfMissing(knex, TABLES.tenants, (t) => {
        t.string('tenant', 48).primary();
        t.string('keyring', 64).notNullable().unique({ indexName: 'keyctl_tenants_keyring' });
        t.string('created_by', 255).notNullable();
        t.datetime('created_at', { precision: 3 }).notNullable();
        t.datetime('shredded_at', { precision: 3 }).nullable();
        t.text('shred_reason').nullable();
      });
    },
  },
  {
    name: '0006_wrapped_keys',
    async up(knex) {
      // Envelope keystores with `storage: database` (docs/keystores.md): wrapped data keys only —
      // KMS or Transit ciphertexts and the KEK that made them, never a key in the clear. A head row
      // per keyring and document carries the revision writers compare-and-set.
      await createIfMissing(knex, TABLES.wrappedHeads, (t) => {
        t.string('keyring', 64).notNullable();
        t.string('place', 16).notNullable();
        t.integer('revision').notNullable();
        t.string('primary_version', 16).nullable();
        t.string('wrapping', 32).notNullable();
        t.primary(['keyring', 'place']);
      });
      await createIfMissing(knex, TABLES.wrappedKeys, (t) => {
        t.string('keyring', 64).notNullable();
        t.string('place', 16).notNullable();
        t.string('version', 16).notNullable();
        t.text('kek').notNullable();
        t.text('blob').notNullable();
        t.string('status', 16).nullable();
        t.string('since', 32).nullable();
        t.primary(['keyring', 'place', 'version']);
      });
    },
  },
];

async function addColumnIfMissing(knex: Knex, table: string, column: string, add: (t: Knex.AlterTableBuilder) => void): Promise<void> {
  if (await knex.schema.hasColumn(table, column)) return;
  await knex.schema.alterTable(table, add);
}

async function backfillAuditChain(knex: Knex): Promise<void> {
  const rows: Record<string, unknown>[] = await knex(TABLES.audit).whereNull('row_hash').orderBy('id');
  const heads = new Map<string, { seq: number; hash: string }>();
  for (const r of rows) {
    const keyring = String(r.keyring);
    const head = heads.get(keyring) ?? { seq: 0, hash: GENESIS_HASH };
    const seq = head.seq + 1;
    const hash = auditRowHash(head.hash, auditFieldsOf({ ...r, seq }));
    await knex(TABLES.audit).where({ id: r.id }).update({ seq, prev_hash: head.hash, row_hash: hash });
    heads.set(keyring, { seq, hash });
  }
  for (const [keyring, h] of heads) {
    await knex(TABLES.auditHead).insert({ keyring, seq: h.seq, last_hash: h.hash });
  }
}

const migrationSource: Knex.MigrationSource<Migration> = {
  getMigrations: async () => MIGRATIONS,
  getMigrationName: (m) => m.name,
  getMigration: async (m) => ({ up: m.up, down: async () => undefined }),
};

export const MIGRATOR_CONFIG: Knex.MigratorConfig = {
  migrationSource,
  tableName: 'keyctl_migrations',
};

export interface MigrationResult {
  applied: string[];
  total: number;
}

function isLockContention(db: Db, err: unknown): boolean {
  const e = err as { name?: string; code?: string; message?: string };
  return e?.name === 'MigrationLocked' || /already locked/i.test(e?.message ?? '') || db.adapter.isLockContention(err);
}

/**
 * Apply pending migrations; a no-op when the schema is current. Two keyctl processes starting
 * on a fresh database (cron and an operator, say) contend for Knex's migration lock: the loser
 * waits and retries instead of failing, and then finds nothing left to do.
 */
export async function migrate(db: Db, opts: { lockWaitMs?: number } = {}): Promise<MigrationResult> {
  const deadline = Date.now() + (opts.lockWaitMs ?? 30_000);
  for (let attempt = 0; ; attempt++) {
    try {
      const [, applied] = (await db.knex.migrate.latest(MIGRATOR_CONFIG)) as [number, string[]];
      return { applied, total: MIGRATIONS.length };
    } catch (err) {
      if (isLockContention(db, err) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, Math.min(1000, 50 * 2 ** attempt) * (0.5 + Math.random())));
        continue;
      }
      if (isLockContention(db, err)) {
        throw new DatabaseError(
          `keyctl's migration lock in ${db.endpoint.description} is still held after ${Math.round((opts.lockWaitMs ?? 30_000) / 1000)} s`,
          'another keyctl may be migrating right now; if none is running, a previous run died mid-migration:\n' +
            'release the lock with `keyctl migrate --unlock`, then run the command again',
        );
      }
      throw translateDbError(err, db.endpoint, 'create keyctl tables in');
    }
  }
}

/** Release a migration lock left behind by a process that died while migrating. */
export async function releaseMigrationLock(db: Db): Promise<void> {
  try {
    await db.knex.migrate.forceFreeMigrationsLock(MIGRATOR_CONFIG);
  } catch (err) {
    throw translateDbError(err, db.endpoint, 'release the migration lock in');
  }
}

/** Names of migrations not yet applied (for `keyctl migrate --status`). */
export async function pendingMigrations(db: Db): Promise<string[]> {
  try {
    const [, pending] = (await db.knex.migrate.list(MIGRATOR_CONFIG)) as [unknown[], Migration[]];
    return pending.map((m) => m.name);
  } catch (err) {
    throw translateDbError(err, db.endpoint, 'read the migration state of');
  }
}
