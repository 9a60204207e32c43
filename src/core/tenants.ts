/**
 * Tenants (docs/tenants.md): each one a keyring of its own, created by `tenant add`, summarised by
 * `tenant list` and `status --all-tenants` in a few queries however many tenants there are, and
 * destroyed on purpose by `shred` (crypto-shredding: every key version of the tenant, so its data
 * — in the database and in every database backup — can no longer be read).
 */
import { ConfigError, KeystoreError, RefusedError, UsageError } from '../base/errors.js';
import { formatTime } from '../base/format.js';
import type { LoadedConfig } from '../config/load.js';
import type { TenancyConfig } from '../config/schema.js';
import { tenantIdProblem, tenantView } from '../config/tenancy.js';
import { fingerprint, generateKey } from '../crypto/keys.js';
import {
  appendAudit,
  getTenantRow,
  insertTenantRow,
  listTenantRows,
  listVersions,
  markMaterialDestroyed,
  markTenantShredded,
  openRotation,
  openRotations,
  setVersionState,
  latestAuditOf,
  versionsByKeyring,
  verifyAuditChain,
  type RegisteredVersion,
} from '../rotation/store.js';
import { anchorAuditHead } from './audit-anchor.js';
import { verifyAudit } from './audit.js';
import { acquireLock, checksumFile, listBackups } from '../backup/files.js';
import { resolveConfigPath } from '../config/load.js';
import { promises as fs } from 'node:fs';
import { approvalDetails, approvalFor, bindingFor, consumeApproval } from './approvals.js';
import type { CoreContext } from './context.js';
import type { Problem } from './health.js';
import { reconcileRegistry } from './registry.js';
import { refuse } from './rotation/guard.js';
import { countVersionsByTenant } from './status.js';

const DAY_MS = 86_400_000;

/**
 * Whether keyctl's own evidence says a tenant is shredded: an ok `shred` row in its audit chain and
 * every version's material destroyed in the registry. keyctl_tenants.shredded_at alone is not
 * enough: a database writer could set it, to hide a live tenant or to have keys destroyed.
 */
export async function shredProven(db: CoreContext['db'], keyring: string, versions?: readonly RegisteredVersion[]): Promise<boolean> {
  const vs = versions ?? (await listVersions(db, keyring));
  if (vs.length === 0 || vs.some((v) => v.material !== 'destroyed')) return false;
  return (await latestAuditOf(db, keyring, 'shred', 1)).length > 0;
}

export function requireTenancy(config: LoadedConfig): TenancyConfig {
  if (!config.tenancy)
    throw new ConfigError(`${config.file} has no tenancy: section, so there are no tenants`, [], 'add tenancy: with the tenant column (docs/tenants.md)');
  return config.tenancy;
}

/** The context of one tenant: its configuration view and its own keystore document. */
export function tenantContext(ctx: CoreContext, id: string): CoreContext {
  if (!ctx.keystoreFor) throw new Error('tenantContext needs ctx.keystoreFor');
  const config = tenantView(ctx.config, id);
  return { ...ctx, config, keystore: ctx.keystoreFor(config) };
}

function checkId(tenancy: TenancyConfig, id: string): void {
  const problem = tenantIdProblem(tenancy, id);
  if (problem) throw new UsageError(problem, 'tenant ids are the values of the tenancy column');
}

/** The tenants lifecycle commands act on with --all-tenants: every live one, in id order. */
export async function liveTenants(ctx: CoreContext): Promise<string[]> {
  requireTenancy(ctx.config);
  const out: string[] = [];
  for (const r of await listTenantRows(ctx.db)) if (!r.shreddedAt || !(await shredProven(ctx.db, r.keyring))) out.push(r.tenant);
  return out;
}

export interface AddTenantResult {
  tenant: string;
  keyring: string;
  keystore: string;
  primary: string;
  fingerprint: string;
  /** The keystore already held the tenant's keyring (a `tenant add` interrupted after writing it). */
  adopted: boolean;
}

export async function addTenant(ctx: CoreContext, id: string): Promise<AddTenantResult> {
  return (await createTenant(ctx, id)).result;
}

/** `init --demo --tenants N`: tenants t001, t002, … (as wide as N needs), each with its v1. */
export async function createDemoTenants(ctx: CoreContext, n: number): Promise<Array<{ id: string; version: string; key: Buffer }>> {
  const width = Math.max(3, String(n).length);
  const out: Array<{ id: string; version: string; key: Buffer }> = [];
  for (let i = 1; i <= n; i++) {
    const id = `t${String(i).padStart(width, '0')}`;
    const { result, key } = await createTenant(ctx, id);
    out.push({ id, version: result.primary, key });
  }
  return out;
}

async function createTenant(ctx: CoreContext, id: string): Promise<{ result: AddTenantResult; key: Buffer }> {
  const tenancy = requireTenancy(ctx.config);
  checkId(tenancy, id);
  const existing = await getTenantRow(ctx.db, id);
  // A case-insensitive collation (MySQL's default) would give `Acme` the rows of `acme`.
  const twin = existing ? null : (await listTenantRows(ctx.db)).find((r) => r.tenant.toLowerCase() === id.toLowerCase());
  if (twin)
    throw new RefusedError(
      `tenant ${id} differs from tenant ${twin.tenant} only in case; a database comparing text without case would give both the same rows`,
      'use a tenant id that differs in more than case',
    );
  if (existing) {
    throw new RefusedError(
      existing.shreddedAt
        ? `tenant ${id} was shredded ${formatTime(existing.shreddedAt)}; a shredded tenant's id is not used again`
        : `tenant ${id} already exists (keyring ${existing.keyring})`,
      'keyctl tenant list shows the tenants',
    );
  }
  const t = tenantContext(ctx, id);
  const keyring = t.config.keyring;
  const snapshot = await t.keystore.read();
  let primary = 'v1';
  let key: Buffer;
  if (snapshot) {
    if (snapshot.doc.keyring !== keyring)
      throw new KeystoreError(
        `${t.keystore.describe()} holds keyring "${snapshot.doc.keyring}", not "${keyring}"`,
        'move that document away, or rename the tenant',
      );
    primary = snapshot.doc.primary;
    key = snapshot.doc.keys.get(primary)!;
  } else {
    key = t.keystore.newKey ? await t.keystore.newKey(keyring, primary) : generateKey();
    await t.keystore.write({ keyring, primary, keys: new Map([[primary, key]]) }, null, `create the keyring of tenant ${id}`);
  }
  await reconcileRegistry(t);
  const at = ctx.now();
  await ctx.db.knex.transaction(async (trx) => {
    await insertTenantRow(trx, ctx.db, { tenant: id, keyring, createdBy: ctx.actor, at });
    await appendAudit(
      ctx.db,
      {
        keyring,
        action: 'tenant-add',
        actor: ctx.actor,
        newVersion: primary,
        outcome: 'ok',
        details: { tenant: id, fingerprint: fingerprint(key), keystore: t.keystore.provider, adopted: snapshot !== null },
      },
      at,
      trx,
    );
  });
  await anchor(t, keyring);
  return { result: { tenant: id, keyring, keystore: t.keystore.describe(), primary, fingerprint: fingerprint(key), adopted: snapshot !== null }, key };
}

async function anchor(t: CoreContext, keyring: string): Promise<void> {
  const r = await anchorAuditHead(t, keyring).catch((err: unknown) => ({ status: 'failed' as const, err }));
  if (r.status === 'failed')
    t.log.warn(`the audit anchor of ${keyring} was not written: ${(r.err as Error).message} — run \`keyctl audit --anchor --tenant …\``);
  else if (r.status === 'refused') t.log.warn(`the audit anchor of ${keyring} was not written: ${r.reason} — ${r.hint}`);
}

export interface TenantSummary {
  tenant: string;
  keyring: string;
  /** null once shredded. */
  primary: string | null;
  versions: Array<{ version: string; state: string; material: string }>;
  rotation: { id: number; phase: string; emergency: boolean } | null;
  /** null once shredded. */
  nextRotationDue: string | null;
  overdue: boolean;
  shredded: boolean;
  shreddedAt: string | null;
  /** Values per version over every target column (with counts); a shredded tenant's are `shredded`. */
  values: Record<string, number> | null;
  /** Values under a version this tenant's registry does not hold, or holds destroyed (not shredded). */
  unreadable: number;
  /**
   * A shredded tenant: key backups in backup.dir that still hold its keys. Retention never removes
   * them (no backup of a shredded tenant is made again): `keyctl backup --prune-tenant ID` does.
   */
  keyBackups?: Array<{ file: string; createdAt: string }>;
  /** keyctl_tenants says shredded, but the registry or the audit chain does not: the row was edited. */
  shredUnproven?: true;
}

export interface TenantsReport {
  tenants: TenantSummary[];
  /** Tenant values found in the targets with no keyring (reported, never guessed); `#null`: no tenant at all. */
  unknownTenants: Array<{ tenant: string; values: number; rows: number }>;
  counted: boolean;
}

/** Every tenant in a few queries: the registry, open rotations, and one grouped count per target. */
export async function tenantSummaries(ctx: CoreContext, opts: { counts: boolean; only?: string[] }): Promise<TenantsReport> {
  const tenancy = requireTenancy(ctx.config);
  const rows = (await listTenantRows(ctx.db)).filter((r) => !opts.only || opts.only.includes(r.tenant));
  const versions = await versionsByKeyring(ctx.db);
  const open = await openRotations(ctx.db);
  const counts = new Map<string, Record<string, number>>();
  const rowsOf = new Map<string, number>();
  if (opts.counts) {
    for (const target of ctx.config.targets) {
      for (const [tenant, c] of await countVersionsByTenant(ctx.db, target, tenancy.column)) {
        const into = counts.get(tenant) ?? {};
        for (const [b, n] of Object.entries(c)) into[b] = (into[b] ?? 0) + n;
        counts.set(tenant, into);
        rowsOf.set(tenant, (rowsOf.get(tenant) ?? 0) + Object.values(c).reduce((a, b) => a + b, 0) / target.columns.length);
      }
    }
  }
  const now = ctx.now().getTime();
  const known = new Set<string>();
  const backupsOf = new Map<string, Array<{ file: string; createdAt: string }>>();
  for (const r of rows.filter((x) => x.shreddedAt))
    backupsOf.set(
      r.keyring,
      (await listBackups(backupDirOf(ctx), r.keyring)).map((b) => ({ file: b.file, createdAt: b.createdAt.toISOString() })),
    );
  const proven = new Set<string>();
  for (const r of rows) if (r.shreddedAt && (await shredProven(ctx.db, r.keyring, versions.get(r.keyring) ?? []))) proven.add(r.tenant);
  const tenants = rows.map((r): TenantSummary => {
    known.add(r.tenant);
    const vs = versions.get(r.keyring) ?? [];
    const shredded = proven.has(r.tenant);
    const primary = shredded ? null : (vs.find((v) => v.state === 'primary') ?? null);
    const due = primary ? primary.createdAt.getTime() + ctx.config.policy.rotationIntervalDays * DAY_MS : null;
    const rotation = open.get(r.keyring);
    const c = counts.get(r.tenant) ?? {};
    const readable = new Set(vs.filter((v) => v.material === 'present').map((v) => v.version));
    const values: Record<string, number> = {};
    let unreadable = 0;
    for (const [b, n] of Object.entries(c)) {
      if (b === '#null') continue;
      if (shredded) values.shredded = (values.shredded ?? 0) + n;
      else {
        values[b.replace(/^#/, '')] = n;
        if (/^v\d+$/.test(b) && !readable.has(b)) unreadable += n;
      }
    }
    return {
      tenant: r.tenant,
      keyring: r.keyring,
      primary: primary?.version ?? null,
      versions: vs.map((v) => ({ version: v.version, state: v.state, material: v.material })),
      rotation: rotation ? { id: rotation.id, phase: rotation.phase, emergency: rotation.emergency } : null,
      nextRotationDue: due === null ? null : new Date(due).toISOString(),
      overdue: due !== null && now > due,
      shredded,
      shreddedAt: r.shreddedAt?.toISOString() ?? null,
      ...(r.shreddedAt && !shredded ? { shredUnproven: true } : {}),
      values: opts.counts ? values : null,
      unreadable,
      ...(shredded ? { keyBackups: backupsOf.get(r.keyring) ?? [] } : {}),
    };
  });
  const unknownTenants = opts.only
    ? []
    : [...counts.entries()]
        .filter(([tenant]) => !known.has(tenant))
        .map(([tenant, c]) => ({
          tenant,
          values: Object.entries(c)
            .filter(([b]) => b !== '#null')
            .reduce((a, [, n]) => a + n, 0),
          rows: Math.round(rowsOf.get(tenant) ?? 0),
        }))
        .sort((a, b) => a.tenant.localeCompare(b.tenant));
  return { tenants, unknownTenants, counted: opts.counts };
}

export interface ShredResult {
  tenant: string;
  keyring: string;
  versions: string[];
  /** The shred was recorded before (an earlier run stopped before the keystore was cleared). */
  resumed: boolean;
  approvedBy: string[];
}

/**
 * Crypto-shred tenant `id`: after the guards (a live tenant, no open rotation, the two-person
 * rule when configured), the registry marks every version retired with its material destroyed and
 * an audited `shred` row records it — in one transaction — and then the keystore's documents of
 * the keyring are removed. A run stopped between the two is finished by running shred again.
 */
export async function shredTenant(ctx: CoreContext, id: string, reason: string): Promise<ShredResult> {
  const tenancy = requireTenancy(ctx.config);
  checkId(tenancy, id);
  if (!reason.trim()) throw new UsageError('shred needs --reason TEXT (recorded in the audit)');
  const row = await getTenantRow(ctx.db, id);
  if (!row) throw new RefusedError(`tenant ${id} has no keyring, so there is nothing to shred`, 'keyctl tenant list shows the tenants');
  const t = tenantContext(ctx, id);
  const keyring = t.config.keyring;
  if (!t.keystore.destroyKeyring)
    throw new KeystoreError(
      `shred cannot remove keys from ${t.keystore.describe()} yet (provider ${t.keystore.provider})`,
      'shredding is implemented for the file keystore; see docs/tenants.md',
    );
  if (row.shreddedAt) {
    // Recorded, but the keystore may still hold the keyring (a run stopped after the commit). Only
    // keyctl's own evidence finishes it: the shred row in the chain, the registry, and the chain
    // intact up to its anchor (written before anything was removed).
    const audit = await verifyAudit(t);
    if (!(await shredProven(ctx.db, keyring)) || !audit.intact) {
      return refuse(t, {
        action: 'shred',
        rotation: null,
        reason: `keyctl_tenants marks tenant ${id} shredded, but ${audit.intact ? 'its audit chain records no shred, or its registry still holds key material' : `its audit chain does not verify (${audit.problems[0] ?? 'see keyctl audit --verify'})`}: keyctl will not destroy keys on the database's word`,
        hint: `restore keyctl_tenants from a database backup; keyctl audit --verify --tenant ${id}`,
        details: { guard: 'shredRecorded', tenant: id },
      });
    }
    const held = await t.keystore.read();
    const archived = (await t.keystore.readArchive(keyring)).revision !== null;
    if (held || archived) await t.keystore.destroyKeyring(keyring, `finish shredding tenant ${id}`);
    const versions = (await listVersions(ctx.db, keyring)).map((v) => v.version);
    return { tenant: id, keyring, versions, resumed: true, approvedBy: [] };
  }
  const rotation = await openRotation(ctx.db, keyring);
  if (rotation) {
    return refuse(t, {
      action: 'shred',
      rotation,
      reason: `rotation #${rotation.id} of tenant ${id} is open (phase ${rotation.phase}); shred destroys every key of a tenant with no rotation open`,
      hint: `finish the rotation or roll it back first: keyctl status --tenant ${id}`,
      details: { guard: 'noOpenRotation', tenant: id },
    });
  }
  const evidence = await approvalFor(t, await bindingFor(t, 'shred'), { emergency: false });
  if (evidence && !evidence.ok)
    return refuse(t, { action: 'shred', rotation: null, reason: evidence.reason, hint: evidence.hint, details: { ...evidence.details, tenant: id } });
  const versions = await listVersions(ctx.db, keyring);
  const at = ctx.now();
  await ctx.db.knex.transaction(async (trx) => {
    if (!(await markTenantShredded(trx, ctx.db, id, reason, at)))
      throw new RefusedError(`tenant ${id} was shredded by another command at the same moment`, `keyctl status --tenant ${id}`);
    for (const v of versions) {
      if (v.state !== 'retired') await setVersionState(trx, ctx.db, keyring, v.version, 'retired', at);
      if (v.material !== 'destroyed') await markMaterialDestroyed(trx, keyring, v.version);
    }
    await consumeApproval(t, trx, evidence, null, at);
    await appendAudit(
      ctx.db,
      {
        registryChanged: true,
        keyring,
        action: 'shred',
        actor: ctx.actor,
        oldVersion: versions.find((v) => v.state === 'primary')?.version ?? null,
        outcome: 'ok',
        details: {
          tenant: id,
          reason,
          versions: versions.map((v) => ({ version: v.version, fingerprint: v.fingerprint })),
          material: 'destroyed',
          ...(evidence ? approvalDetails(evidence) : {}),
        },
      },
      at,
      trx,
    );
  });
  // Anchored before anything is removed: a run stopped after this is finished only on that evidence.
  await anchor(t, keyring);
  await t.keystore.destroyKeyring(keyring, `shred tenant ${id}`);
  return {
    tenant: id,
    keyring,
    versions: versions.map((v) => v.version),
    resumed: false,
    approvedBy: evidence?.ok && evidence.kind === 'approved' ? evidence.state.valid.map((v) => v.approver) : [],
  };
}

/**
 * What `status --check --all-tenants` fails on: the summaries, and every tenant's audit hash chain
 * (one read of the audit table; the anchors live in each tenant's keystore document and are checked
 * by `status --check --tenant ID`).
 */
export async function tenantProblems(ctx: CoreContext, r: TenantsReport): Promise<Problem[]> {
  const out: Problem[] = [];
  const tenantOf = new Map(r.tenants.map((t) => [t.keyring, t.tenant]));
  const one = r.tenants.length === 1 ? r.tenants[0]!.keyring : undefined;
  for (const chain of await verifyAuditChain(ctx.db, one)) {
    const tenant = tenantOf.get(chain.keyring);
    // The registry's own finding is registry-tampered, in the tenant's own check.
    const broken = chain.problems.filter((p) => !p.startsWith('keyctl_key_versions '));
    if (tenant === undefined || broken.length === 0) continue;
    out.push({
      code: 'audit-chain-broken',
      message: `tenant ${tenant}: the audit chain of keyring ${chain.keyring} does not verify: ${broken[0]}${broken.length > 1 ? ` (and ${broken.length - 1} more)` : ''}`,
      hint: `keyctl audit --verify --tenant ${tenant}`,
    });
  }
  for (const t of r.tenants) {
    if (t.shredUnproven)
      out.push({
        code: 'registry-tampered',
        message: `tenant ${t.tenant}: keyctl_tenants marks it shredded, but its audit chain records no shred or its registry still holds key material: the row was edited outside keyctl`,
        hint: `restore keyctl_tenants from a database backup (keyctl audit --tenant ${t.tenant} --all shows its history); the tenant is treated as live`,
      });
    if (t.shredded) continue;
    if (t.overdue)
      out.push({
        code: 'rotation-overdue',
        message: `tenant ${t.tenant}: rotation overdue (due ${t.nextRotationDue})`,
        hint: `keyctl runbook run routine-rotation --tenant ${t.tenant}`,
      });
    if (t.unreadable > 0)
      out.push({
        code: 'unknown-version-values',
        message: `tenant ${t.tenant}: ${t.unreadable} value(s) under a version its keyring does not hold`,
        hint: `keyctl status --tenant ${t.tenant} shows which versions; restore the key from a backup (keyctl restore --tenant ${t.tenant})`,
      });
  }
  for (const u of r.unknownTenants)
    out.push({
      code: 'tenant-without-keyring',
      message: u.tenant === '#null' ? `${u.rows} row(s) have no tenant (NULL in the tenancy column)` : `tenant ${u.tenant}: ${u.rows} row(s), and no keyring`,
      hint: u.tenant === '#null' ? 'give those rows their tenant' : `create its keyring: keyctl tenant add ${u.tenant}`,
    });
  return out;
}

function backupDirOf(ctx: CoreContext): string {
  return resolveConfigPath(ctx.config, ctx.config.backup.dir);
}

/**
 * `backup --prune-tenant ID`: delete the key backups of a shredded tenant (each holds only that
 * tenant's keyring), under the backup directory's lock, with an audit row in the tenant's chain.
 */
export async function pruneTenantBackups(ctx: CoreContext, id: string, outDir?: string): Promise<{ tenant: string; deleted: string[] }> {
  checkId(requireTenancy(ctx.config), id);
  const row = await getTenantRow(ctx.db, id);
  if (!row) throw new RefusedError(`tenant ${id} has no keyring`, 'keyctl tenant list shows the tenants');
  // The keyring from the configuration, not the database's row; shredded on keyctl's own evidence,
  // and gone from the keystore.
  const t = tenantContext(ctx, id);
  const keyring = t.config.keyring;
  const gone = (await t.keystore.read()) === null && (await t.keystore.readArchive(keyring)).revision === null;
  if (!row.shreddedAt || !gone || !(await shredProven(ctx.db, keyring)))
    throw new RefusedError(
      `tenant ${id} is not shredded${row.shreddedAt ? ' on keyctl’s evidence (audit chain, registry and keystore)' : ''}; its key backups are what restores its data`,
      'retention prunes the backups of a live tenant (backup.retentionDays); --prune-tenant is for a shredded one',
    );
  const dir = outDir ?? backupDirOf(ctx);
  const release = await acquireLock(dir, ctx.now());
  const deleted: string[] = [];
  try {
    for (const b of await listBackups(dir, keyring)) {
      await fs.unlink(b.file);
      await fs.unlink(checksumFile(b.file)).catch(() => undefined);
      deleted.push(b.name);
    }
  } finally {
    await release();
  }
  await appendAudit(ctx.db, { keyring: row.keyring, action: 'backup', actor: ctx.actor, outcome: 'ok', details: { pruneTenant: id, deleted, dir } }, ctx.now());
  return { tenant: id, deleted };
}
