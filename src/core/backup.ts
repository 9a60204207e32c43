/**
 * Key backups (docs/backup.md):
 * - `backup`: every non-retired key version plus the registry, as JSON encrypted with OpenPGP to
 *   every recipient, written atomically with a checksum, then old backups pruned;
 * - `recover-test`: open a backup with a recipient's secret key and prove it restores access to
 *   the data (every version in use present, fingerprints right, real rows decrypt);
 * - `restore`: put key versions from a backup back into the keystore.
 * Every run appends an audit row naming files, checksums and versions, never key material.
 */
import { formatCount } from '../base/format.js';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { BackupConfig } from '../config/schema.js';
import { resolveConfigPath } from '../config/load.js';
import { CiphertextError } from '../crypto/codec.js';
import { ContextValueError } from '../crypto/context.js';
import { columnsToRead, FieldCodec, fieldSpecOf } from '../crypto/field.js';
import { fingerprint, KEY_BYTES } from '../crypto/keys.js';
import { formatKey, keyOf, sampleRows } from '../reencrypt/scan.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { BACKUP_FORMAT, BACKUP_FORMAT_VERSION, BACKUP_FORMAT_VERSION_WRAPPED_ONLY, parseBackupDocument, type BackupDocument } from '../backup/document.js';
import { EnvelopeKeystore } from '../keystore/envelope.js';
import { acquireLock, backupName, checkChecksum, listBackups, pruneBackups, sha256Hex, writeChecksum } from '../backup/files.js';
import { makeDirectory } from '../util/directory.js';
import { type Recipient, decryptWith, encryptTo, readIdentity, readRecipients } from '../backup/pgp.js';
import { appendAudit, latestAuditOf, verifyAuditChain, type AuditAction, type AuditOutcome } from '../rotation/store.js';
import type { CoreContext } from './context.js';
import { BackupError, KeyctlError, KeystoreError, RefusedError, UsageError } from '../base/errors.js';
import { reconcileRegistry } from './registry.js';
import { listVersions } from '../rotation/store.js';
import { openRotation } from '../rotation/store.js';
import { countVersions, keyringLoader } from './status.js';

export interface BackupOptions {
  /** Overrides backup.dir. */
  outDir?: string;
  /** Overrides backup.recipients. */
  recipients?: string[];
}

export interface BackupResult {
  file: string;
  sha256: string;
  bytes: number;
  versions: string[];
  recipients: Array<{ file: string; fingerprint: string }>;
  pruned: string[];
}

function backupDir(ctx: CoreContext, override?: string): string {
  return override ? path.resolve(override) : resolveConfigPath(ctx.config, ctx.config.backup.dir);
}

async function audit(
  ctx: CoreContext,
  action: AuditAction,
  outcome: AuditOutcome,
  details: Record<string, unknown>,
  rotationId?: number | null,
): Promise<void> {
  await appendAudit(ctx.db, { keyring: ctx.config.keyring, action, actor: ctx.actor, outcome, rotationId: rotationId ?? null, details }, ctx.now());
}

/** Record a failed run when the database is there to record it; the original error is what matters. */
async function auditFailure(ctx: CoreContext, action: AuditAction, err: unknown, details: Record<string, unknown>): Promise<void> {
  const reason = err instanceof KeyctlError ? `${err.kind}: ${err.message}` : String(err);
  await audit(ctx, action, 'failed', { ...details, reason }).catch(() => undefined);
}

/** For each version in `live`, the newest backup file in `dir` (by its audit row) that holds it. */
async function newestBackupPerVersion(ctx: CoreContext, dir: string, live: Set<string>): Promise<Set<string>> {
  const rows = (await latestAuditOf(ctx.db, ctx.config.keyring, 'backup')).filter((r) => r.details?.dir === dir);
  const keep = new Set<string>();
  const covered = new Set<string>();
  for (const r of rows) {
    const versions = Array.isArray(r.details?.versions) ? r.details.versions.map(String) : [];
    const fresh = versions.filter((v) => live.has(v) && !covered.has(v));
    if (fresh.length === 0 || typeof r.details?.file !== 'string') continue;
    keep.add(r.details.file);
    for (const v of fresh) covered.add(v);
  }
  return keep;
}

export async function runBackup(ctx: CoreContext, opts: BackupOptions = {}): Promise<BackupResult> {
  const cfg: BackupConfig = ctx.config.backup;
  const dir = backupDir(ctx, opts.outDir);
  const recipientFiles =
    opts.recipients && opts.recipients.length > 0 ? opts.recipients.map((r) => path.resolve(r)) : cfg.recipients.map((r) => resolveConfigPath(ctx.config, r));
  if (recipientFiles.length === 0) {
    throw new UsageError(
      'no backup recipients: a backup must be encrypted to at least one OpenPGP public key',
      'list armored public key files under backup.recipients in keyctl.yaml, or pass --recipient FILE',
    );
  }
  try {
    // Recipients first: a bad one must stop the run before anything is written. A file may hold
    // several public keys; the backup is encrypted to every one (one entry per key in the result).
    const recipients: Recipient[] = [];
    for (const f of recipientFiles) {
      for (const r of await readRecipients(f)) if (!recipients.some((x) => x.fingerprint === r.fingerprint)) recipients.push(r);
    }
    try {
      await makeDirectory(dir);
      await fs.access(dir, fs.constants.W_OK);
    } catch (err) {
      throw new BackupError(
        `cannot write to the backup directory ${dir}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
        'create it, make it writable by this user, or pass --out DIR',
      );
    }
    const release = await acquireLock(dir, ctx.now());
    try {
      const { snapshot, versions: registry } = await reconcileRegistry(ctx);
      const archive = await ctx.keystore.readArchive(ctx.config.keyring);
      const rotation = await openRotation(ctx.db, ctx.config.keyring);
      // Envelope keystores: the wrapped blobs as stored, in every backup.
      const envelope = ctx.keystore instanceof EnvelopeKeystore ? ctx.keystore : null;
      if (!cfg.unwrappedKeys && !envelope)
        throw new UsageError(
          `backup.unwrappedKeys: false keeps only wrapped keys, but keystore provider ${ctx.keystore.provider} does not wrap them`,
          'remove backup.unwrappedKeys from keyctl.yaml (only aws-kms and vault-transit keystores have wrapped keys)',
        );
      const wrapped = new Map<string, { kek: string; blob: string }>();
      for (const place of ['archive', 'published'] as const)
        for (const [v, e] of (await envelope?.readWrapped(place))?.doc.keys ?? []) wrapped.set(v, { kek: e.kek, blob: e.blob });
      const keys: BackupDocument['keys'] = [];
      for (const v of registry) {
        // Retired keys still in the archive are backed up too: database backups made before their
        // retirement need them until policy.retiredKeyRetentionDays has passed.
        if (v.material === 'destroyed') continue;
        const key = snapshot.doc.keys.get(v.version) ?? archive.doc.keys.get(v.version)?.key;
        if (!key)
          throw new KeystoreError(
            `${ctx.keystore.describe()} lacks ${v.version}, which the registry lists as ${v.state}`,
            'restore the keystore from an earlier backup (`keyctl restore`) before backing up',
          );
        if (fingerprint(key) !== v.fingerprint)
          throw new KeystoreError(
            `the keystore's ${v.version} does not match the fingerprint in the registry`,
            'the keystore holds a different key under this version; find out why before backing it up',
          );
        keys.push({
          version: v.version,
          state: v.state,
          fingerprint: v.fingerprint,
          compromised: v.compromised,
          createdAt: v.createdAt.toISOString(),
          ...(cfg.unwrappedKeys ? { key: key.toString('base64') } : {}),
          ...(wrapped.has(v.version) ? { wrapped: wrapped.get(v.version)! } : {}),
        });
      }
      const at = ctx.now();
      const doc: BackupDocument = {
        format: BACKUP_FORMAT,
        formatVersion: cfg.unwrappedKeys ? BACKUP_FORMAT_VERSION : BACKUP_FORMAT_VERSION_WRAPPED_ONLY,
        keyring: ctx.config.keyring,
        createdAt: at.toISOString(),
        primary: snapshot.doc.primary,
        database: { client: ctx.config.database.client },
        rotation: rotation ? { id: rotation.id, phase: rotation.phase, oldVersion: rotation.oldVersion, newVersion: rotation.newVersion } : null,
        keys,
        registry: registry.map((v) => ({ version: v.version, state: v.state, fingerprint: v.fingerprint, material: v.material })),
      };
      const plain = Buffer.from(`${JSON.stringify(doc, null, 2)}\n`, 'utf8');
      let sealed: Uint8Array;
      try {
        sealed = await encryptTo(recipients, plain);
      } finally {
        plain.fill(0);
      }
      const file = path.join(dir, backupName(ctx.config.keyring, at));
      const sha256 = sha256Hex(sealed);
      try {
        await writeFileAtomic(file, Buffer.from(sealed), 0o600);
        await writeChecksum(file, sha256);
      } catch (err) {
        await fs.unlink(file).catch(() => undefined);
        throw new BackupError(
          `cannot write ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
          'check free space and permissions of the backup directory',
        );
      }
      // Only after today's backup is safely written.
      // Never prune the newest backup holding a version whose material still exists elsewhere only
      // in the keystore (the new backup holds every such version, but the rule also covers a
      // backup written with --recipient to another directory).
      const live = new Set(registry.filter((v) => v.material !== 'destroyed').map((v) => v.version));
      const holding = await newestBackupPerVersion(ctx, dir, live);
      const pruned = await pruneBackups(dir, ctx.config.keyring, at, cfg.retentionDays, cfg.keepAtLeast, holding);
      const result: BackupResult = {
        file,
        sha256,
        bytes: sealed.length,
        versions: keys.map((k) => k.version),
        recipients: recipients.map((r) => ({ file: r.file, fingerprint: r.fingerprint })),
        pruned: pruned.deleted,
      };
      await audit(
        ctx,
        'backup',
        'ok',
        { file: path.basename(file), dir, sha256, versions: result.versions, recipients: result.recipients.map((r) => r.fingerprint), pruned: pruned.deleted },
        rotation?.id,
      );
      return result;
    } finally {
      await release();
    }
  } catch (err) {
    await auditFailure(ctx, 'backup', err, { dir });
    throw err;
  }
}

export interface RecoverTestOptions {
  backupFile?: string;
  identityFile: string;
  passphrase?: string;
  /** Rows sampled per target and decrypted with the recovered keys only. */
  sample: number;
}

export interface RecoverCheck {
  name: string;
  ok: boolean;
  detail: string;
}

export interface RecoverTestReport {
  passed: boolean;
  file: string;
  createdAt: string;
  ageHours: number;
  versions: string[];
  checks: RecoverCheck[];
  /** Values decrypted from real rows with the recovered keys, per version. */
  decrypted: Record<string, number>;
  /** Sampled values of `plaintext: encrypt` targets not encrypted yet: passed over, no key needed. */
  plaintext: number;
}

/**
 * Read, check and decrypt one backup file. The checksum is checked first: a damaged file is
 * reported as damaged, not as a decryption failure. `missingChecksum: 'allow'` (restore, in a
 * disaster) accepts a file whose checksum file is gone, never one whose checksum is wrong.
 */
async function openBackup(file: string, identityFile: string, passphrase: string | undefined, missingChecksum: 'allow' | 'refuse'): Promise<BackupDocument> {
  let data: Buffer;
  try {
    data = await fs.readFile(file);
  } catch (err) {
    throw new BackupError(
      `cannot read the backup ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : ((err as NodeJS.ErrnoException).code ?? String(err))}`,
    );
  }
  const sum = await checkChecksum(file, data);
  if (!sum.ok && !(sum.missing && missingChecksum === 'allow'))
    throw new BackupError(`${file} failed its checksum: ${sum.problem}`, 'the file was changed or damaged after it was written; use another backup');
  const identity = await readIdentity(identityFile, passphrase);
  const plain = await decryptWith(identity, identityFile, data, file);
  try {
    return parseBackupDocument(plain, file);
  } finally {
    plain.fill(0);
  }
}

async function pickBackup(ctx: CoreContext, given?: string): Promise<string> {
  if (given) return path.resolve(given);
  const dir = backupDir(ctx);
  const newest = (await listBackups(dir, ctx.config.keyring))[0];
  if (!newest) throw new BackupError(`no backup of keyring ${ctx.config.keyring} in ${dir}`, 'run `keyctl backup` first, or pass --backup FILE');
  return newest.file;
}

export async function recoverTest(ctx: CoreContext, opts: RecoverTestOptions): Promise<RecoverTestReport> {
  let file = opts.backupFile ?? '';
  try {
    file = await pickBackup(ctx, opts.backupFile);
    const doc = await openBackup(file, opts.identityFile, opts.passphrase, 'refuse');
    const checks: RecoverCheck[] = [];
    const check = (name: string, ok: boolean, detail: string) => checks.push({ name, ok, detail });
    const createdAt = new Date(doc.createdAt);
    const ageHours = (ctx.now().getTime() - createdAt.getTime()) / 3_600_000;
    check(
      'keyring',
      doc.keyring === ctx.config.keyring,
      doc.keyring === ctx.config.keyring ? `keyring ${doc.keyring}` : `backup is of keyring "${doc.keyring}", keyctl.yaml names "${ctx.config.keyring}"`,
    );
    const maxAge = ctx.config.backup.maxAgeHours;
    check('age', ageHours <= maxAge, `${ageHours.toFixed(1)} h old (backup.maxAgeHours: ${maxAge})`);
    const keys = new Map<string, Buffer>();
    const registry = new Map((await listVersions(ctx.db, ctx.config.keyring)).map((v) => [v.version, v]));
    const keyProblems: string[] = [];
    for (const k of doc.keys) {
      let key: Buffer;
      try {
        key = await keyOfEntry(ctx, doc, k);
      } catch (err) {
        keyProblems.push(`${k.version}: ${err instanceof Error ? err.message : String(err)}`);
        continue;
      }
      if (key.length !== KEY_BYTES) keyProblems.push(`${k.version} is ${key.length} bytes, not ${KEY_BYTES}`);
      else if (fingerprint(key) !== k.fingerprint) keyProblems.push(`${k.version} does not match the fingerprint recorded in the backup`);
      else if (registry.has(k.version) && registry.get(k.version)!.fingerprint !== k.fingerprint)
        keyProblems.push(`${k.version} does not match the fingerprint in the database registry`);
      else keys.set(k.version, key);
    }
    check(
      'keys',
      keyProblems.length === 0 && doc.keys.length > 0,
      keyProblems.length ? keyProblems.join('; ') : `${doc.keys.length} key(s), each ${KEY_BYTES} bytes and matching its fingerprint`,
    );
    // Every version that still has data must be in the backup.
    const inUse = new Map<string, number>();
    const known = keyringLoader(ctx);
    for (const t of ctx.config.targets) {
      for (const col of await countVersions(ctx.db, t, known)) for (const [v, n] of Object.entries(col.counts)) inUse.set(v, (inUse.get(v) ?? 0) + n);
    }
    const missing = [...inUse].filter(([v]) => !keys.has(v));
    check(
      'versions in use',
      missing.length === 0,
      missing.length
        ? `the backup lacks ${missing.map(([v, n]) => `${v} (${formatCount(n)} value(s) in the database)`).join(', ')}`
        : `every version with data is present: ${[...inUse.keys()].join(', ') || 'none'}`,
    );
    // Real rows, decrypted with the recovered keys only. Plaintext is discarded at once.
    const decrypted: Record<string, number> = {};
    const failures: string[] = [];
    // Plaintext of a table being onboarded (plaintext: encrypt) needs no key: passed over, counted.
    let plaintext = 0;
    for (const t of ctx.config.targets) {
      const field = new FieldCodec(fieldSpecOf(t));
      const rows = await sampleRows(ctx.db, t.table, t.primaryKey, columnsToRead(t), opts.sample, t.scope);
      for (const row of rows) {
        for (const c of t.columns) {
          const value = row[c];
          if (typeof value !== 'string' && !(value instanceof Uint8Array)) continue;
          if (field.isPlaintext(value)) {
            plaintext++;
            continue;
          }
          try {
            const v = value instanceof Uint8Array ? field.openBinary(value, keys).version : field.open(value, keys, { row, column: c }).version;
            decrypted[v] = (decrypted[v] ?? 0) + 1;
          } catch (err) {
            if (!(err instanceof CiphertextError) && !(err instanceof ContextValueError)) throw err;
            const reason = err instanceof ContextValueError ? `context-${err.problem}` : err.reason;
            if (failures.length < 20) failures.push(`${t.table}.${c} pk=${formatKey(keyOf(row, t.primaryKey))}: ${reason}`);
          }
        }
      }
    }
    const total = Object.values(decrypted).reduce((a, b) => a + b, 0);
    check(
      'sample decrypts',
      failures.length === 0,
      failures.length
        ? `values that the recovered keys cannot decrypt: ${failures.join(', ')}`
        : `${formatCount(total)} value(s) from ${ctx.config.targets.length} target(s) decrypted with the recovered keys`,
    );
    const report: RecoverTestReport = {
      passed: checks.every((c) => c.ok),
      file,
      createdAt: doc.createdAt,
      ageHours,
      versions: doc.keys.map((k) => k.version),
      checks,
      decrypted,
      plaintext,
    };
    await audit(ctx, 'recover-test', report.passed ? 'ok' : 'failed', {
      file: path.basename(file),
      createdAt: doc.createdAt,
      ageHours: Math.round(ageHours * 10) / 10,
      versions: report.versions,
      failed: checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`),
      decrypted,
    });
    for (const k of keys.values()) k.fill(0);
    return report;
  } catch (err) {
    await auditFailure(ctx, 'recover-test', err, { file: file ? path.basename(file) : null });
    throw err;
  }
}

export interface RestorePlan {
  file: string;
  createdAt: string;
  /** Versions to add to the published keyring / the archive. */
  toPublished: string[];
  toArchive: string[];
  /** Already in the keystore with the same material. */
  unchanged: string[];
  createsKeyring: boolean;
}

export interface RestoreOptions {
  backupFile: string;
  identityFile: string;
  passphrase?: string;
  /** Shown the plan; returns whether to go ahead. */
  confirm: (plan: RestorePlan) => Promise<boolean>;
  /** Also restore versions the registry does not know (a backup from elsewhere); needs a reason, audited. */
  allowUnknown?: { reason: string };
}

export async function restoreBackup(ctx: CoreContext, opts: RestoreOptions): Promise<RestorePlan & { applied: boolean }> {
  const file = path.resolve(opts.backupFile);
  // A missing checksum file is tolerated here (disaster recovery); a wrong one is not.
  const doc = await openBackup(file, opts.identityFile, opts.passphrase, 'allow');
  if (doc.keyring !== ctx.config.keyring)
    throw new RefusedError(
      `${file} is a backup of keyring "${doc.keyring}", keyctl.yaml names "${ctx.config.keyring}"`,
      'use a backup of this keyring, or the keyctl.yaml of that one',
    );
  const published = await ctx.keystore.read();
  const archive = await ctx.keystore.readArchive(ctx.config.keyring);
  const registry = new Map((await listVersions(ctx.db, ctx.config.keyring)).map((v) => [v.version, v]));
  // Restore puts back only what the registry knows, and only a registry the audit chain vouches for:
  // a backup re-encrypted with an added key must not publish it to every application.
  const chain = (await verifyAuditChain(ctx.db, ctx.config.keyring)).flatMap((r) => r.problems);
  if (chain.length > 0) {
    await audit(ctx, 'restore', 'refused', { file: path.basename(file), reason: 'audit chain or registry not intact', problems: chain.slice(0, 5) });
    throw new RefusedError(
      `the registry of keyring ${ctx.config.keyring} cannot be trusted: ${chain[0]}`,
      'run `keyctl audit --verify`, and restore the database (not the keys) first; nothing was written',
    );
  }
  const unknown = doc.keys.filter((k) => !registry.has(k.version));
  const unsafe = unknown.filter((k) => k.compromised || k.state === 'retired');
  if (unsafe.length > 0) {
    await audit(ctx, 'restore', 'refused', {
      file: path.basename(file),
      unknownVersions: unsafe.map((k) => ({ version: k.version, fingerprint: k.fingerprint, compromised: k.compromised, state: k.state })),
    });
    throw new RefusedError(
      `${file} holds ${unsafe.map((k) => `${k.version} (${k.compromised ? 'compromised' : k.state})`).join(', ')}, unknown to the database registry; keyctl never publishes a compromised or retired key it cannot vouch for`,
      'restore the database registry first (from a database backup), then the keys; nothing was written',
    );
  }
  if (unknown.length > 0 && !opts.allowUnknown) {
    await audit(ctx, 'restore', 'refused', {
      file: path.basename(file),
      unknownVersions: unknown.map((k) => ({ version: k.version, fingerprint: k.fingerprint })),
    });
    throw new RefusedError(
      `${file} holds ${unknown.map((k) => `${k.version} (fingerprint ${k.fingerprint})`).join(', ')}, which the database registry does not know; keyctl restores only keys the registry knows`,
      'a backup from another deployment, or a forged one; nothing was written. Only if you know where the key comes from: --allow-unknown --reason "…" (audited)',
    );
  }
  const plan: RestorePlan = { file, createdAt: doc.createdAt, toPublished: [], toArchive: [], unchanged: [], createsKeyring: published === null };
  const material = new Map<string, Buffer>();
  for (const k of doc.keys) {
    const key = await keyOfEntry(ctx, doc, k);
    if (key.length !== KEY_BYTES || fingerprint(key) !== k.fingerprint)
      throw new BackupError(`${k.version} in ${file} is damaged (wrong length or fingerprint)`, 'use another backup');
    const reg = registry.get(k.version);
    if (reg && reg.fingerprint !== k.fingerprint)
      throw new RefusedError(
        `${k.version} in the backup differs from ${k.version} in the database registry (fingerprint ${k.fingerprint} vs ${reg.fingerprint})`,
        'this backup belongs to another database or an older generation of keys; nothing was written',
      );
    const existing = published?.doc.keys.get(k.version) ?? archive.doc.keys.get(k.version)?.key;
    if (existing) {
      if (!existing.equals(key))
        throw new RefusedError(
          `the keystore already holds a different key under ${k.version} (fingerprint ${fingerprint(existing)}, backup ${k.fingerprint}); refusing to overwrite it`,
          'nothing was written; find out which key is right before going on',
        );
      plan.unchanged.push(k.version);
      continue;
    }
    material.set(k.version, key);
    const state = reg?.state ?? k.state;
    if (state === 'archived' || state === 'retired') plan.toArchive.push(k.version);
    else plan.toPublished.push(k.version);
  }
  if (plan.toPublished.length + plan.toArchive.length === 0) return { ...plan, applied: false };
  if (!(await opts.confirm(plan))) return { ...plan, applied: false };
  if (plan.toPublished.length > 0 || !published) {
    const keys = new Map(published?.doc.keys ?? []);
    for (const v of plan.toPublished) keys.set(v, material.get(v)!);
    const primary = published?.doc.primary ?? [...registry.values()].find((v) => v.state === 'primary')?.version ?? doc.primary;
    await ctx.keystore.write({ keyring: ctx.config.keyring, primary, keys }, published?.revision ?? null, `restore from ${path.basename(file)}`);
  }
  if (plan.toArchive.length > 0) {
    const keys = new Map(archive.doc.keys);
    for (const v of plan.toArchive) {
      const state = registry.get(v)?.state ?? doc.keys.find((k) => k.version === v)?.state;
      keys.set(v, { key: material.get(v)!, status: state === 'retired' ? 'retired' : 'archived', since: ctx.now().toISOString() });
    }
    await ctx.keystore.writeArchive({ keyring: ctx.config.keyring, keys }, archive.revision, `restore from ${path.basename(file)}`);
  }
  await audit(ctx, 'restore', 'ok', {
    file: path.basename(file),
    createdAt: doc.createdAt,
    toPublished: plan.toPublished,
    toArchive: plan.toArchive,
    unchanged: plan.unchanged,
    ...(unknown.length > 0
      ? { unknownAllowed: unknown.map((k) => ({ version: k.version, fingerprint: k.fingerprint })), reason: opts.allowUnknown?.reason ?? null }
      : {}),
  });
  return { ...plan, applied: true };
}

/**
 * A backed-up key: its bytes, or — in a backup of wrapped blobs only — unwrapped by the envelope
 * keystore's KEK (so the key service must be reachable and the KEK usable).
 */
async function keyOfEntry(ctx: CoreContext, doc: BackupDocument, k: BackupDocument['keys'][number]): Promise<Buffer> {
  if (k.key !== undefined) return Buffer.from(k.key, 'base64');
  const ks = ctx.keystore;
  if (!(ks instanceof EnvelopeKeystore) || !k.wrapped)
    throw new BackupError(
      `the backup holds ${k.version} only wrapped (by ${k.wrapped?.kek ?? '?'}), and keystore provider ${ks.provider} cannot unwrap it`,
      'use the aws-kms or vault-transit keystore whose key-encryption key wrapped it, or a backup made with backup.unwrappedKeys: true',
    );
  return ks.unwrapEntry(doc.keyring, k.version, k.wrapped);
}
