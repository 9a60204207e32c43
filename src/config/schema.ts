/**
 * The shape of keyctl.yaml. Strict objects: an unknown key is an error (a typo in a policy
 * name must not silently fall back to a default). docs/configuration.md mirrors this file.
 */
import { z } from 'zod';
import { NORMALIZE_STEPS, type NormalizeStep } from '../crypto/blind-index.js';
import { checkTemplate, templateColumns } from '../crypto/context.js';

const identifier = z.string().regex(/^[A-Za-z_][A-Za-z0-9_$]{0,62}$/, 'a SQL identifier (letters, digits, _ and $; not starting with a digit)');

const tableName = z
  .string()
  .regex(/^([A-Za-z_][A-Za-z0-9_$]{0,62}\.)?[A-Za-z_][A-Za-z0-9_$]{0,62}$/, 'a table name, optionally schema-qualified (schema.table)');

export const DatabaseSchema = z.strictObject({
  client: z.enum(['sqlite', 'pg', 'mysql']),
  connection: z.string().min(1),
  pool: z
    .strictObject({
      min: z.int().min(0).default(0),
      max: z.int().min(1).max(100).default(4),
    })
    .optional(),
  connectTimeoutSeconds: z.number().positive().max(600).default(10),
});

const FileKeystoreSchema = z.strictObject({
  provider: z.literal('file'),
  path: z.string().min(1).default('.keyctl/keyring.json'),
});

const EnvKeystoreSchema = z.strictObject({
  provider: z.literal('env'),
  /** Variables are <prefix>KEY_V1, <prefix>KEY_V2, … and <prefix>PRIMARY. */
  prefix: z
    .string()
    .regex(/^[A-Z_][A-Z0-9_]*$/, 'an environment variable prefix in capitals, e.g. KEYCTL_')
    .default('KEYCTL_'),
});

/** Timeouts and retries shared by the network keystores. */
const networkOptions = {
  /** Per request; a request that takes longer is abandoned (and retried). */
  timeoutSeconds: z.number().positive().max(300).default(10),
  /** Tries per request, counting the first: retried on throttling, 5xx, timeouts and dropped connections. */
  maxAttempts: z.int().min(1).max(10).default(4),
};

const AwsKeystoreSchema = z
  .strictObject({
    provider: z.literal('aws-secrets-manager'),
    /** Name or ARN of the secret holding the published keyring document. */
    secretId: z.string().min(1).max(2048),
    /** Defaults to the SDK's own (AWS_REGION, the profile's region). */
    region: z
      .string()
      .regex(/^[a-z]{2}(-[a-z]+)+-\d+$/, 'an AWS region such as eu-west-1')
      .optional(),
    /** Another endpoint (VPC endpoint, FIPS endpoint, a local test server). */
    endpoint: z.url({ protocol: /^https?$/ }).optional(),
    /** Archived and retired keys are secrets named <archivePrefix><version>; default "<secret name>/archive/". */
    archivePrefix: z
      .string()
      .regex(/^[A-Za-z0-9/_+=.@-]{1,500}$/, 'a secret name prefix (letters, digits and /_+=.@-)')
      .optional(),
    /** KMS key for secrets keyctl creates (default: the account's aws/secretsmanager key). */
    kmsKeyId: z.string().min(1).optional(),
    /** Days a deleted archive secret stays recoverable (AWS allows 7 to 30). */
    recoveryWindowDays: z.int().min(7).max(30).default(30),
    ...networkOptions,
  })
  .refine((k) => k.archivePrefix !== undefined || !k.secretId.startsWith('arn:'), {
    message: 'archivePrefix is required when secretId is an ARN (e.g. archivePrefix: keyctl/payments/archive/)',
    path: ['archivePrefix'],
  });

const vaultPath = z.string().regex(/^[A-Za-z0-9_.@-]+(\/[A-Za-z0-9_.@-]+)*$/, 'a Vault path such as keyctl/payments (no leading or trailing slash)');

const VaultKeystoreSchema = z.strictObject({
  provider: z.literal('vault'),
  /** Default: VAULT_ADDR. */
  address: z.url({ protocol: /^https?$/ }).optional(),
  /** Vault Enterprise namespace; default: VAULT_NAMESPACE. */
  namespace: z.string().min(1).optional(),
  /** Mount point of the KV version 2 secrets engine. */
  mount: vaultPath.default('secret'),
  /** Path of the published keyring document inside the mount. */
  path: vaultPath,
  /** Path of the archive (archived and retired keys); default "<path>-archive". */
  archivePath: vaultPath.optional(),
  /** File holding the token; default: VAULT_TOKEN, then ~/.vault-token. */
  tokenFile: z.string().min(1).optional(),
  /** PEM file of the CA that signed Vault's certificate; default: VAULT_CACERT. */
  caCert: z.string().min(1).optional(),
  ...networkOptions,
});

/** Where the envelope providers keep the wrapped data keys (docs/keystores.md, "Envelope encryption"). */
const envelopeStorage = {
  /** `file`: a JSON file of wrapped blobs, safe to deploy. `database`: keyctl's tables in the application database (references only). */
  storage: z.enum(['file', 'database']).default('file'),
  /** The wrapped keyring file (its archive is `<name>.archive.json` beside it); with storage: database, the audit anchor's place (beside it). */
  path: z.string().min(1).default('.keyctl/keyring.wrapped.json'),
};

const AwsKmsKeystoreSchema = z.strictObject({
  provider: z.literal('aws-kms'),
  /** The KMS key that wraps the data keys: key id, key ARN, alias name (alias/…) or alias ARN. */
  keyId: z.string().min(1).max(2048),
  /** Defaults to the key ARN's region, else the SDK's own (AWS_REGION, the profile's region). */
  region: z
    .string()
    .regex(/^[a-z]{2}(-[a-z]+)+-\d+$/, 'an AWS region such as eu-west-1')
    .optional(),
  /** Another endpoint (VPC endpoint, FIPS endpoint, a local test server). */
  endpoint: z.url({ protocol: /^https?$/ }).optional(),
  ...envelopeStorage,
  ...networkOptions,
});

const VaultTransitKeystoreSchema = z.strictObject({
  provider: z.literal('vault-transit'),
  /** Default: VAULT_ADDR. */
  address: z.url({ protocol: /^https?$/ }).optional(),
  /** Vault Enterprise namespace; default: VAULT_NAMESPACE. */
  namespace: z.string().min(1).optional(),
  /** Mount point of the Transit secrets engine. */
  mount: vaultPath.default('transit'),
  /** The Transit key that wraps the data keys (derived=true recommended: it binds each blob to its keyring and version). */
  key: z.string().regex(/^[A-Za-z0-9_.@-]+$/, 'a Transit key name (letters, digits and _.@-)'),
  /** File holding the token; default: VAULT_TOKEN, then ~/.vault-token. */
  tokenFile: z.string().min(1).optional(),
  /** PEM file of the CA that signed Vault's certificate; default: VAULT_CACERT. */
  caCert: z.string().min(1).optional(),
  ...envelopeStorage,
  ...networkOptions,
});

export const KeystoreSchema = z.discriminatedUnion('provider', [
  FileKeystoreSchema,
  EnvKeystoreSchema,
  AwsKeystoreSchema,
  VaultKeystoreSchema,
  AwsKmsKeystoreSchema,
  VaultTransitKeystoreSchema,
]);

/** A Fernet token prefix: not one that reads as a keyctl version (`v2:`), which would pass for AES-GCM under it. */
const fernetPrefix = z
  .string()
  .max(64)
  .refine((p) => !/^v[0-9]+:/.test(p), 'a prefix starting like a key version (v2:) would make tokens look like AES-GCM values under it; choose another');

/** The columns a template reads, or none when it does not parse (reported by its own check). */
function safeTemplateColumns(template: string): string[] {
  return checkTemplate(template).errors.length > 0 ? [] : templateColumns(template);
}

/** A row-context template (`{table}.{column}:{id}`): every problem named with its position. */
const contextTemplate = z.string().superRefine((template, ctx) => {
  for (const issue of checkTemplate(template).errors) {
    ctx.addIssue({ code: 'custom', message: `${issue.message}${issue.position !== undefined ? ` (at character ${issue.position})` : ''}` });
  }
});

export const TargetSchema = z
  .strictObject({
    table: tableName,
    /**
     * The column keyset pagination walks and the compare-and-set addresses rows by, or a composite
     * key's columns in key order (`[tenant_id, id]`); a list of one column is that column.
     */
    primaryKey: z
      .union(
        [
          identifier,
          z
            .array(identifier)
            .min(1)
            .max(8)
            .refine((cols) => new Set(cols).size === cols.length)
            .transform((cols) => (cols.length === 1 ? cols[0]! : cols)),
        ],
        { error: 'a column name, or a list of up to 8 different column names for a composite key (e.g. [tenant_id, id])' },
      )
      .default('id'),
    columns: z.array(identifier).min(1),
    /**
     * What a value that is not ciphertext is: `error` (default) — reported as unparseable and left
     * alone; `encrypt` — plaintext from before the table was encrypted, which reencrypt encrypts
     * under the primary (docs/format.md#plaintext). A value that looks like ciphertext
     * (`v<N>:` and a base64 character) is never taken for plaintext.
     */
    plaintext: z.enum(['error', 'encrypt']).default('error'),
    /**
     * How values are written: `aes-gcm` (default, docs/format.md) or `fernet` — Fernet tokens, as
     * Python's cryptography.fernet writes them, every keyring version's key used as a Fernet key.
     */
    codec: z.enum(['aes-gcm', 'fernet']).default('aes-gcm'),
    /** codec: fernet — a fixed text in front of every token (e.g. `FERNET_V1:`). */
    prefix: fernetPrefix.optional(),
    /**
     * Migration from Fernet: values under these keyring versions are Fernet tokens (behind `prefix`);
     * reencrypt moves them to the target's codec, and a rollback to one of them writes Fernet again.
     */
    from: z
      .discriminatedUnion('codec', [
        z.strictObject({
          codec: z.literal('fernet'),
          versions: z.array(z.string().regex(/^v[0-9]+$/, 'a key version (v1, v2, …)')).min(1),
          prefix: fernetPrefix.default(''),
        }),
        /** AES-GCM values written before `aad`/`derive` were set: the next rotation binds them. */
        z.strictObject({
          codec: z.literal('aes-gcm'),
          versions: z.array(z.string().regex(/^v[0-9]+$/, 'a key version (v1, v2, …)')).min(1),
        }),
      ])
      .optional(),
    /**
     * Associated data: a template over the row (`"{table}.{column}:{id}"`) whose bytes bind each
     * value to its row and column (docs/format.md, "Associated data and derived keys").
     */
    aad: contextTemplate.optional(),
    /** Per-row keys: HKDF-SHA256 of the version's key with the rendered `info` template. */
    derive: z.strictObject({ info: contextTemplate }).optional(),
    /**
     * Blind indexes kept beside encrypted columns (docs/format.md, "Blind indexes"): `column` holds
     * the keyed hash of `source`'s plaintext, recomputed under the target version in the same
     * compare-and-set that re-encrypts `source`.
     */
    blindIndexes: z
      .array(
        z.strictObject({
          column: identifier,
          source: identifier,
          normalize: z.array(z.enum(NORMALIZE_STEPS as [NormalizeStep, ...NormalizeStep[]])).default([]),
        }),
      )
      .max(16)
      .default([]),
  })
  .refine((t) => t.prefix === undefined || t.codec === 'fernet', {
    path: ['prefix'],
    message: 'prefix is for codec: fernet (a migration from Fernet puts it under from:)',
  })
  .refine((t) => t.from === undefined || t.codec === 'aes-gcm', {
    path: ['from'],
    message: 'from: fernet migrates to aes-gcm; with codec: fernet every version is Fernet already',
  })
  .refine((t) => t.codec === 'aes-gcm' || (t.aad === undefined && t.derive === undefined), {
    path: ['aad'],
    message: 'aad and derive are for codec: aes-gcm (a Fernet token has no associated data)',
  })
  .refine((t) => [t.aad, t.derive?.info].every((tpl) => tpl === undefined || !safeTemplateColumns(tpl).some((c) => t.columns.includes(c))), {
    path: ['aad'],
    message: 'a context template cannot read an encrypted column of its own target (it changes as the value is rewritten); use the key or another plain column',
  })
  .refine((t) => t.blindIndexes.every((b) => t.columns.includes(b.source)), {
    path: ['blindIndexes'],
    message: "a blind index's source must be one of the target's columns (the encrypted column it indexes)",
  })
  .refine(
    (t) => {
      const key: readonly string[] = typeof t.primaryKey === 'string' ? [t.primaryKey] : t.primaryKey;
      const cols = t.blindIndexes.map((b) => b.column);
      const context = [t.aad, t.derive?.info].flatMap((tpl) => (tpl === undefined ? [] : safeTemplateColumns(tpl)));
      return new Set(cols).size === cols.length && cols.every((c) => !t.columns.includes(c) && !key.includes(c) && !context.includes(c));
    },
    {
      path: ['blindIndexes'],
      message: 'each blind index needs its own column, which is not an encrypted column, a key column or a column a context template reads',
    },
  )
  .refine((t) => t.from?.codec !== 'aes-gcm' || t.aad !== undefined || t.derive !== undefined, {
    path: ['from'],
    message: 'from: { codec: aes-gcm } names versions written without aad or derive; set aad or derive, or remove from',
  });

export const PolicySchema = z.strictObject({
  rotationIntervalDays: z.int().min(1).max(3650).default(90),
  minPropagationSeconds: z.int().min(0).default(300),
  rollbackWindowDays: z.int().min(0).max(3650).default(30),
  retiredKeys: z.enum(['destroy', 'archive']).default('destroy'),
  /**
   * With `retiredKeys: destroy`: a retired key stays recoverable (archived, and in every key backup)
   * this many days after its retirement, so database backups made before then can still be read;
   * `keyctl purge` destroys it afterwards. 0: destroyed at retire.
   */
  retiredKeyRetentionDays: z.int().min(0).max(36500).default(400),
  /** `status --check`: an open rotation in one phase longer than this is stalled (promoted: see retireGraceDays). */
  maxPhaseHours: z.number().positive().max(87600).default(72),
  /** `status --check`: a promoted rotation not retired this many days after its rollback window ended is stalled. */
  retireGraceDays: z.number().min(0).max(3650).default(7),
  /** `status --check`: an emergency rotation still open this long after the compromise was declared is overdue. */
  emergencyMaxHours: z.number().positive().max(8760).default(24),
});

export const BackupSchema = z.strictObject({
  /** Where `keyctl backup` writes (relative to the config file). */
  dir: z.string().min(1).default('.keyctl/backups'),
  /** Armored OpenPGP public key files; every backup is encrypted to all of them. */
  recipients: z.array(z.string().min(1)).default([]),
  /** Backups older than this are pruned, except the newest `keepAtLeast` valid ones. */
  retentionDays: z.int().min(1).max(36500).default(7),
  keepAtLeast: z.int().min(1).max(1000).default(3),
  /** recover-test fails, and `status --check` reports, when the newest backup is older than this (a silently broken nightly job). */
  maxAgeHours: z.number().positive().max(87600).default(26),
  /** `status --check` (with recipients set): fails when no recover-test passed within this many days. */
  recoverTestMaxAgeDays: z.number().positive().max(3650).default(35),
  /**
   * Envelope keystores (aws-kms, vault-transit): backups always hold the wrapped blobs; with true
   * (the default) also the unwrapped keys, encrypted to the recipients, so a KMS outage or a
   * deleted KMS key does not lose them. false: wrapped blobs only (docs/backup.md, "Envelope keystores").
   */
  unwrappedKeys: z.boolean().default(true),
});

/** The actions a two-person rule can guard (docs/approvals.md). */
export const APPROVAL_ACTIONS = ['generate', 'promote', 'retire', 'rollback', 'shred'] as const;
export type ApprovalAction = (typeof APPROVAL_ACTIONS)[number];

const approverName = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'an approver name of lowercase letters, digits, . _ and -');

/**
 * The two-person rule: which people may approve (each with an OpenPGP public key), how many
 * distinct approvers' signatures each guarded action needs, and whether an emergency may act first
 * and be approved after. Key files are read and checked when a command needs them (core/approvals).
 */
export const ApprovalsSchema = z
  .strictObject({
    approvers: z
      .array(z.strictObject({ name: approverName, publicKey: z.string().min(1) }))
      .min(1)
      .refine((a) => new Set(a.map((x) => x.name)).size === a.length, { message: 'each approver name is listed once' }),
    /** action → number of distinct approvers' signatures (0: no approval). */
    require: z
      .record(z.string(), z.int().min(0).max(16))
      .default({})
      .superRefine((r, ctx) => {
        for (const action of Object.keys(r)) {
          if (!(APPROVAL_ACTIONS as readonly string[]).includes(action))
            ctx.addIssue({ code: 'custom', path: [action], message: `unknown action "${action}" (approvals guard ${APPROVAL_ACTIONS.join(', ')})` });
        }
      })
      .transform((r) => r as Partial<Record<ApprovalAction, number>>),
    /** A request's signatures are valid this long after it was made. */
    expiresHours: z.number().positive().max(8760).default(24),
    /** Emergency actions may proceed with `--break-glass --reason` and be approved afterwards. */
    breakGlass: z.boolean().default(false),
  })
  .superRefine((a, ctx) => {
    for (const [action, n] of Object.entries(a.require)) {
      if ((n ?? 0) > a.approvers.length)
        ctx.addIssue({
          code: 'custom',
          path: ['require', action],
          message: `${action} needs ${n} distinct approvers but only ${a.approvers.length} are listed under approvals.approvers`,
        });
    }
  });
export type ApprovalsConfig = z.infer<typeof ApprovalsSchema>;

/** A keyring name: what `keyring:` and every tenant's rendered `tenancy.keyring` must be. */
export const KEYRING_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/**
 * Per-tenant keyrings (docs/tenants.md): every target table holds `column`, whose value names the
 * tenant; each tenant has its own keyring, named by `keyring` with `{tenant}` in it.
 */
export const TenancySchema = z.strictObject({
  column: identifier,
  keyring: z
    .string()
    .default('tenant-{tenant}')
    .refine((k) => k.split('{tenant}').length === 2, 'a keyring name template with {tenant} in it exactly once, e.g. "tenant-{tenant}"')
    .refine((k) => /^[A-Za-z0-9_.-]*$/.test(k.replace('{tenant}', '')), 'a keyring name template: letters, digits, _ . - and {tenant}')
    .refine((k) => k.replace('{tenant}', '').length <= 56, 'a keyring name template of at most 56 characters besides {tenant}'),
});
export type TenancyConfig = z.infer<typeof TenancySchema>;

/**
 * A check of something outside keyctl (a database snapshot, a pg_dump) that runbook steps
 * `check: external` may run: declared here only, never in a runbook file, so a runbook cannot
 * bring its own shell command. Run with `sh -c` in the config's directory; exit 0 passes.
 */
const CheckCommandSchema = z.strictObject({
  command: z.string().min(1),
  /** Shown to the operator before it runs. */
  description: z.string().min(1).optional(),
  /** Stopped (and failed) after this long. */
  timeoutSeconds: z.number().positive().max(86400).default(300),
});

export const ConfigSchema = z.strictObject({
  database: DatabaseSchema,
  keystore: KeystoreSchema,
  keyring: z.string().regex(KEYRING_NAME, 'a keyring name (letters, digits, _ . -)').default('default'),
  /** Per-tenant keyrings (docs/tenants.md); absent: the one keyring above. */
  tenancy: TenancySchema.optional(),
  targets: z
    .array(TargetSchema)
    .default([])
    .refine((ts) => new Set(ts.map((t) => t.table)).size === ts.length, {
      message: 'each table is one target: list all its encrypted columns under one entry (checkpoints and counts are per table)',
    }),
  policy: PolicySchema.default(() => PolicySchema.parse({})),
  backup: BackupSchema.default(() => BackupSchema.parse({})),
  /** The two-person rule (docs/approvals.md); absent: no approvals needed. */
  approvals: ApprovalsSchema.optional(),
  /** A directory of your own runbooks (*.yaml), relative to this file; they may replace shipped ones by name. */
  runbooks: z.string().min(1).optional(),
  /** Named check commands runbook steps may run (`kind: check`, `check: external`, `external: NAME`). */
  checks: z.record(z.string().regex(/^[a-z0-9][a-z0-9-]{0,63}$/, 'a check name of lowercase letters, digits and -'), CheckCommandSchema).default({}),
});

export type RawConfig = z.infer<typeof ConfigSchema>;
/** A target as commands use it: as configured, and with `scope` only one tenant's rows (config/tenancy). */
export type TargetConfig = z.infer<typeof TargetSchema> & { scope?: { column: string; value: string } };
export type KeystoreConfig = z.infer<typeof KeystoreSchema>;
export type DatabaseConfig = z.infer<typeof DatabaseSchema>;
export type PolicyConfig = z.infer<typeof PolicySchema>;
export type BackupConfig = z.infer<typeof BackupSchema>;
export type CheckCommandConfig = z.infer<typeof CheckCommandSchema>;

/** Provider names, read from the union (for error messages). */
export const KEYSTORE_PROVIDERS: string[] = KeystoreSchema.options.map((o) => o.shape.provider.value);
