/**
 * The `aws-secrets-manager` keystore, through the official @aws-sdk/client-secrets-manager
 * (loaded only when this provider is used). Credentials come from the SDK's default provider
 * chain (environment, shared config/profile, SSO, web identity, instance or task role), never
 * from keyctl's config file.
 *
 * Published keyring: the value of secret `secretId`, in Secrets Manager's rotation vocabulary.
 * Each change is staged as a new version labelled AWSPENDING, then AWSCURRENT is moved onto it
 * with `RemoveFromVersionId` = the version keyctl read (Secrets Manager refuses the move if
 * someone else made another version current meanwhile: that is keyctl's check-and-set), and
 * Secrets Manager itself gives AWSPREVIOUS to the version that was current. AWSPENDING is then
 * removed, so a version labelled AWSPENDING is always a change that was not made current.
 *
 * Archive: one secret per archived or retired version, named `<archivePrefix><version>`, its
 * value the archive document with that one key, tagged keyctl:keyring, keyctl:version,
 * keyctl:status (archived | retired) and keyctl:since (when it entered that status). A key
 * whose material is destroyed is deleted with the configured recovery window (7–30 days);
 * within the window `aws secretsmanager restore-secret` brings it back.
 *
 * ListSecrets is eventually consistent ("might not reflect changes from the last five minutes"),
 * so it only *discovers* archive names. Whether an archive secret exists, is scheduled for
 * deletion, and which version is current comes from DescribeSecret on its deterministic name:
 * every version up to the highest one the published keyring or the listing names, and the
 * following ones until one does not exist. An archive secret scheduled for deletion that must
 * hold a key again is restored (RestoreSecret), never created anew; one whose key is being
 * destroyed is left to its deletion.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { SecretsManagerClient, Tag } from '@aws-sdk/client-secrets-manager';
import type { Logger } from '../base/logger.js';
import { KeyctlError, KeystoreConflictError, KeystoreError } from '../base/errors.js';
import { compareVersions, isVersionName, versionName, versionNumber } from '../crypto/keys.js';
import { parseArchiveJson, parseKeyringJson, serialiseArchive, serialiseKeyring } from './document.js';
import { awsCommonError, awsErrorName, awsHttpStatus, networkCode, unreachable, withRemoteRetry } from './remote.js';
import type { AnchorSnapshot, ArchiveDocument, ArchivedKey, ArchiveSnapshot, Keystore, KeyringDocument, KeystoreSnapshot } from './types.js';

type Sdk = typeof import('@aws-sdk/client-secrets-manager');

export interface AwsKeystoreOptions {
  secretId: string;
  region?: string | undefined;
  endpoint?: string | undefined;
  archivePrefix?: string | undefined;
  kmsKeyId?: string | undefined;
  recoveryWindowDays: number;
  timeoutSeconds: number;
  maxAttempts: number;
  log: Logger;
}

const SERVICE = 'AWS Secrets Manager';
const RETRYABLE_NAMES = new Set([
  'ThrottlingException',
  'TooManyRequestsException',
  'InternalServiceError',
  'InternalFailure',
  'ServiceUnavailable',
  'RequestTimeout',
]);

interface ArchiveEntrySecret {
  name: string;
  version: string;
  /** VersionId holding AWSCURRENT ('' when the secret has no current value). */
  current: string;
  /** DeletedDate is set: the secret is scheduled for deletion (reads and writes are refused until restored). */
  scheduled: boolean;
}

/** DescribeSecret calls in flight at once while probing archive names. */
const PROBE_CONCURRENCY = 4;

export class AwsSecretsManagerKeystore implements Keystore {
  readonly provider = 'aws-secrets-manager';
  readonly writable = true;
  private readonly o: AwsKeystoreOptions;
  private readonly region: string | undefined;
  private readonly prefix: string;
  private loaded: Promise<{ sdk: Sdk; client: SecretsManagerClient }> | undefined;

  constructor(o: AwsKeystoreOptions) {
    this.o = o;
    // An ARN names its region; otherwise the SDK's own default (AWS_REGION, the profile).
    this.region = o.region ?? (o.secretId.startsWith('arn:') ? o.secretId.split(':')[3] : undefined);
    this.prefix = o.archivePrefix ?? `${o.secretId}/archive/`;
  }

  describe(): string {
    return `AWS Secrets Manager secret ${this.o.secretId}${this.region ? ` (${this.region})` : ''}`;
  }

  async read(): Promise<KeystoreSnapshot | null> {
    const got = await this.call(
      'GetSecretValue',
      this.o.secretId,
      (c, s) => c.send(new s.GetSecretValueCommand({ SecretId: this.o.secretId, VersionStage: 'AWSCURRENT' })),
      {
        notFound: true,
      },
    );
    if (!got) return null;
    if (got.SecretString === undefined || !got.VersionId) {
      throw new KeystoreError(
        `${this.describe()}: the AWSCURRENT version has no SecretString`,
        'keyctl stores the keyring as a JSON string; restore the previous version (see docs/keystores.md)',
      );
    }
    const doc = parseKeyringJson(got.SecretString, `${this.describe()} (version ${got.VersionId})`, this.restoreHint(got.VersionId));
    return { doc, revision: got.VersionId };
  }

  async write(doc: KeyringDocument, expectedRevision: string | null, why: string): Promise<void> {
    const id = this.o.secretId;
    const text = serialiseKeyring(doc);
    if (expectedRevision === null) {
      await this.createOrFill(
        id,
        text,
        [...this.baseTags(doc.keyring), { Key: 'keyctl:role', Value: 'published' }],
        `keyctl keyring ${doc.keyring}: the published keyring document`,
        why,
      );
      return;
    }
    const current = await this.currentVersionId(id);
    if (current !== expectedRevision) throw this.conflict(expectedRevision, current, null);
    const token = randomUUID();
    const staged = await this.call('PutSecretValue', id, (c, s) =>
      c.send(new s.PutSecretValueCommand({ SecretId: id, ClientRequestToken: token, SecretString: text, VersionStages: ['AWSPENDING'] })),
    );
    const pending = staged.VersionId ?? token;
    let refused: unknown = null;
    try {
      await this.call('UpdateSecretVersionStage', id, (c, s) =>
        c.send(
          new s.UpdateSecretVersionStageCommand({ SecretId: id, VersionStage: 'AWSCURRENT', MoveToVersionId: pending, RemoveFromVersionId: expectedRevision }),
        ),
      );
    } catch (err) {
      refused = err;
    }
    await this.checkMoved(id, expectedRevision, pending, refused);
    try {
      await this.call('UpdateSecretVersionStage', id, (c, s) =>
        c.send(new s.UpdateSecretVersionStageCommand({ SecretId: id, VersionStage: 'AWSPENDING', RemoveFromVersionId: pending })),
      );
    } catch (err) {
      this.o.log.warn(`keystore: the new keyring is current, but removing its AWSPENDING label failed (${(err as Error).message})`);
    }
  }

  async readArchive(keyring: string): Promise<ArchiveSnapshot> {
    return this.readLiveArchive(keyring, liveEntries(await this.scanArchive()));
  }

  private async readLiveArchive(keyring: string, entries: ArchiveEntrySecret[]): Promise<ArchiveSnapshot> {
    const keys = new Map<string, ArchivedKey>();
    for (const e of entries) {
      const got = await this.call('GetSecretValue', e.name, (c, s) => c.send(new s.GetSecretValueCommand({ SecretId: e.name, VersionId: e.current })));
      const doc = parseArchiveJson(got.SecretString ?? '', `archive secret ${e.name}`, this.restoreHint(e.current, e.name));
      const key = doc.keys.get(e.version);
      if (doc.keyring !== keyring || doc.keys.size !== 1 || !key) {
        throw new KeystoreError(
          `archive secret ${e.name} does not hold exactly key ${e.version} of keyring ${keyring}`,
          'fix or remove that secret; keyctl names archive secrets <archivePrefix><version>',
        );
      }
      keys.set(e.version, key);
    }
    return { doc: { keyring, keys }, revision: entries.length === 0 ? null : archiveRevision(entries) };
  }

  async writeArchive(doc: ArchiveDocument, expectedRevision: string | null, why: string): Promise<void> {
    const all = await this.scanArchive();
    const live = liveEntries(all);
    const revision = live.length === 0 ? null : archiveRevision(live);
    if (revision !== expectedRevision) {
      throw new KeystoreConflictError(
        `the key archive under ${this.prefix} was changed by someone else since keyctl read it`,
        'run the command again so it starts from the current archive',
      );
    }
    const before = (await this.readLiveArchive(doc.keyring, live)).doc.keys;
    const scheduled = new Set(all.filter((e) => e.scheduled).map((e) => e.version));
    for (const version of [...doc.keys.keys()].sort(compareVersions)) {
      const entry = doc.keys.get(version)!;
      const old = before.get(version);
      if (old && old.status === entry.status && old.since === entry.since && old.key.equals(entry.key)) continue;
      const name = `${this.prefix}${version}`;
      const text = serialiseArchive({ keyring: doc.keyring, keys: new Map([[version, entry]]) });
      const tags = [
        ...this.baseTags(doc.keyring),
        { Key: 'keyctl:role', Value: 'archive' },
        { Key: 'keyctl:version', Value: version },
        { Key: 'keyctl:status', Value: entry.status },
        { Key: 'keyctl:since', Value: entry.since },
      ];
      if (scheduled.has(version)) {
        // Archived again (a rollback, then a new promote) or kept as a retired key: its material
        // must be held, and the name is taken until the deletion runs, so the secret comes back.
        await this.restoreAndPut(name, text, tags);
      } else if (old) {
        await this.putAndTag(name, text, tags);
      } else {
        await this.createOrFill(name, text, tags, `keyctl keyring ${doc.keyring}: ${entry.status} key ${version}`, why);
      }
    }
    // A key leaving the archive: its secret is deleted with the recovery window. One already
    // scheduled for deletion is left as it is (never restored only to be deleted again).
    for (const e of live) {
      if (doc.keys.has(e.version)) continue;
      try {
        await this.call('DeleteSecret', e.name, (c, s) =>
          c.send(new s.DeleteSecretCommand({ SecretId: e.name, RecoveryWindowInDays: this.o.recoveryWindowDays })),
        );
      } catch (err) {
        if (!(await this.scheduledForDeletion(e.name))) throw err;
        continue;
      }
      this.o.log.info(`keystore: scheduled deletion of archive secret ${e.name} (recoverable for ${this.o.recoveryWindowDays} days)`);
    }
  }

  // ── helpers ────────────────────────────────────────────────────────────────────────────────

  /**
   * Crypto-shredding: every archive secret and the published secret are deleted without a recovery
   * window (ForceDeleteWithoutRecovery), so no version of them stays recoverable. The anchor stays.
   */
  async destroyKeyring(_keyring: string, _why: string): Promise<void> {
    const names = [...(await this.scanArchive()).map((e) => e.name), this.o.secretId];
    for (const name of names) {
      await this.call('DeleteSecret', name, (c, s) => c.send(new s.DeleteSecretCommand({ SecretId: name, ForceDeleteWithoutRecovery: true })), {
        notFound: true,
      });
    }
    this.o.log.info(`keystore: deleted ${names.join(', ')} without a recovery window`);
  }

  /**
   * The audit anchor: secret `<secret name>/audit-anchor` (see anchorSecretName), changed like the published keyring (staged
   * AWSPENDING, then AWSCURRENT moved with RemoveFromVersionId = the version read). Whether the
   * move lost a race is decided by re-reading the labels, whatever error Secrets Manager returned.
   */
  async readAnchor(_keyring: string): Promise<AnchorSnapshot> {
    const name = anchorSecretName(this.o.secretId);
    const where = `AWS Secrets Manager secret ${name}`;
    const got = await this.call('GetSecretValue', name, (c, s) => c.send(new s.GetSecretValueCommand({ SecretId: name, VersionStage: 'AWSCURRENT' })), {
      notFound: true,
    });
    if (!got?.VersionId || got.SecretString === undefined) return { text: null, revision: null, where };
    return { text: got.SecretString, revision: got.VersionId, where };
  }

  async writeAnchor(keyring: string, text: string, expectedRevision: string | null): Promise<void> {
    const name = anchorSecretName(this.o.secretId);
    if (expectedRevision === null) {
      const tags = [...this.baseTags(keyring), { Key: 'keyctl:role', Value: 'audit-anchor' }];
      await this.createOrFill(name, text, tags, `keyctl keyring ${keyring}: the audit chain anchor`, 'anchor the audit chain');
      return;
    }
    const lost = new KeystoreConflictError(`the audit anchor ${name} was changed by someone else since keyctl read it`, 'keyctl reads it again and retries');
    if ((await this.currentVersionId(name)) !== expectedRevision) throw lost;
    const token = randomUUID();
    const staged = await this.call('PutSecretValue', name, (c, s) =>
      c.send(new s.PutSecretValueCommand({ SecretId: name, ClientRequestToken: token, SecretString: text, VersionStages: ['AWSPENDING'] })),
    );
    const pending = staged.VersionId ?? token;
    let failure: unknown = null;
    await this.call('UpdateSecretVersionStage', name, (c, s) =>
      c.send(
        new s.UpdateSecretVersionStageCommand({ SecretId: name, VersionStage: 'AWSCURRENT', MoveToVersionId: pending, RemoveFromVersionId: expectedRevision }),
      ),
    ).catch((err: unknown) => (failure = err));
    await this.call('UpdateSecretVersionStage', name, (c, s) =>
      c.send(new s.UpdateSecretVersionStageCommand({ SecretId: name, VersionStage: 'AWSPENDING', RemoveFromVersionId: pending })),
    ).catch(() => undefined);
    if (failure === null) return;
    const current = await this.currentVersionId(name);
    if (current === pending) return;
    throw current === expectedRevision ? failure : lost;
  }

  private baseTags(keyring: string): Tag[] {
    return [
      { Key: 'keyctl:keyring', Value: keyring },
      { Key: 'keyctl:managed-by', Value: 'keyctl' },
    ];
  }

  /** CreateSecret; when the secret exists without a current value (made by Terraform, say), fill it. */
  private async createOrFill(name: string, text: string, tags: Tag[], description: string, _why: string): Promise<void> {
    const token = randomUUID();
    try {
      await this.call('CreateSecret', name, (c, s) =>
        c.send(
          new s.CreateSecretCommand({
            Name: name,
            ClientRequestToken: token,
            SecretString: text,
            Description: description,
            Tags: tags,
            ...(this.o.kmsKeyId ? { KmsKeyId: this.o.kmsKeyId } : {}),
          }),
        ),
      );
      return;
    } catch (err) {
      if (!(err instanceof KeystoreError && /ResourceExistsException/.test(err.message))) {
        // The name is held by a secret scheduled for deletion (whatever error says so): bring it back.
        if (await this.scheduledForDeletion(name)) return this.restoreAndPut(name, text, tags);
        throw err;
      }
    }
    const current = await this.currentVersionId(name);
    if (current !== null) {
      throw new KeystoreConflictError(
        `secret ${name} was created by someone else since keyctl read it`,
        'run the command again so it starts from what is there now',
      );
    }
    await this.call('PutSecretValue', name, (c, s) =>
      c.send(new s.PutSecretValueCommand({ SecretId: name, ClientRequestToken: token, SecretString: text, VersionStages: ['AWSCURRENT'] })),
    );
    await this.call('TagResource', name, (c, s) => c.send(new s.TagResourceCommand({ SecretId: name, Tags: tags })));
  }

  private async currentVersionId(id: string): Promise<string | null> {
    const d = await this.call('DescribeSecret', id, (c, s) => c.send(new s.DescribeSecretCommand({ SecretId: id })), { notFound: true });
    if (!d) return null;
    for (const [version, stages] of Object.entries(d.VersionIdsToStages ?? {})) if (stages.includes('AWSCURRENT')) return version;
    return null;
  }

  /** RestoreSecret, then the new value as AWSCURRENT and the tags. */
  private async restoreAndPut(name: string, text: string, tags: Tag[]): Promise<void> {
    await this.call('RestoreSecret', name, (c, s) => c.send(new s.RestoreSecretCommand({ SecretId: name })));
    this.o.log.info(`keystore: restored archive secret ${name}, which was scheduled for deletion, to hold its key again`);
    await this.putAndTag(name, text, tags);
  }

  private async putAndTag(name: string, text: string, tags: Tag[]): Promise<void> {
    const token = randomUUID();
    await this.call('PutSecretValue', name, (c, s) => c.send(new s.PutSecretValueCommand({ SecretId: name, ClientRequestToken: token, SecretString: text })));
    await this.call('TagResource', name, (c, s) => c.send(new s.TagResourceCommand({ SecretId: name, Tags: tags })));
  }

  private async scheduledForDeletion(name: string): Promise<boolean> {
    const d = await this.call('DescribeSecret', name, (c, s) => c.send(new s.DescribeSecretCommand({ SecretId: name })), { notFound: true }).catch(() => null);
    return Boolean(d?.DeletedDate);
  }

  /**
   * Which label holds what after keyctl moved AWSCURRENT onto `pending`, read back from the
   * secret itself: the answer to UpdateSecretVersionStage (an error type, or even success) is not
   * trusted to say whether someone else's change won.
   */
  private async checkMoved(id: string, expected: string, pending: string, refused: unknown): Promise<void> {
    let labels: Record<string, string>;
    try {
      labels = await this.labelsOf(id);
    } catch (err) {
      if (refused) throw refused;
      this.o.log.warn(`keystore: could not read back the labels of ${id} after moving AWSCURRENT (${(err as Error).message})`);
      return;
    }
    const current = labels.AWSCURRENT ?? null;
    if (current === pending) {
      if (refused)
        this.o.log.warn(
          `keystore: UpdateSecretVersionStage ${id} failed (${(refused as Error).message}), but AWSCURRENT is on keyctl's version: it was applied`,
        );
      return;
    }
    // Current and then replaced by a newer change made on top of it (AWSPREVIOUS is keyctl's).
    if (!refused && labels.AWSPREVIOUS === pending) return;
    if (current !== expected) throw this.conflict(expected, current, pending);
    if (refused) throw refused;
    throw new KeystoreError(
      `${this.describe()}: Secrets Manager accepted moving AWSCURRENT to version ${pending}, but AWSCURRENT is still on ${expected}`,
      `run the command again; keyctl's change stays staged as AWSPENDING (version ${pending}) and was not made current`,
    );
  }

  /** Staging label → VersionId, from DescribeSecret (read-after-write consistent, unlike ListSecrets). */
  private async labelsOf(id: string): Promise<Record<string, string>> {
    const d = await this.call('DescribeSecret', id, (c, s) => c.send(new s.DescribeSecretCommand({ SecretId: id })));
    const out: Record<string, string> = {};
    for (const [version, stages] of Object.entries(d.VersionIdsToStages ?? {})) for (const stage of stages) out[stage] = version;
    return out;
  }

  /**
   * Every archive secret, live or scheduled for deletion, looked up by name with DescribeSecret.
   * The names to look up: versions the listing shows (it may lag minutes behind), every version
   * up to the highest the published keyring or the listing names, and the following ones until
   * one does not exist (a rolled-back key, retired, is above the published ones).
   */
  private async scanArchive(): Promise<ArchiveEntrySecret[]> {
    const listed = await this.listArchiveVersions();
    const published = await this.read().catch(() => null);
    const known = [...listed, ...(published ? [...published.doc.keys.keys()] : [])].map(versionNumber);
    const highest = Math.max(0, ...known);
    const candidates = new Set<number>(known);
    for (let n = 1; n <= highest; n++) candidates.add(n);
    const found = new Map<number, ArchiveEntrySecret>();
    const probe = async (n: number): Promise<void> => {
      const e = await this.describeArchive(n);
      if (e) found.set(n, e);
    };
    await inBatches([...candidates], PROBE_CONCURRENCY, probe);
    for (let n = highest + 1; ; n++) {
      await probe(n);
      if (!found.has(n)) break;
    }
    return [...found.values()].sort((a, b) => compareVersions(a.version, b.version));
  }

  private async describeArchive(n: number): Promise<ArchiveEntrySecret | null> {
    const version = versionName(n);
    const name = `${this.prefix}${version}`;
    const d = await this.call('DescribeSecret', name, (c, s) => c.send(new s.DescribeSecretCommand({ SecretId: name })), { notFound: true });
    if (!d) return null;
    const current = Object.entries(d.VersionIdsToStages ?? {}).find(([, stages]) => stages.includes('AWSCURRENT'))?.[0] ?? '';
    return { name, version, current, scheduled: Boolean(d.DeletedDate) };
  }

  /** Versions of the archive secrets ListSecrets shows (live or scheduled for deletion): discovery only. */
  private async listArchiveVersions(): Promise<string[]> {
    const out: string[] = [];
    let next: string | undefined;
    do {
      const token = next;
      const page = await this.call('ListSecrets', this.prefix, (c, s) =>
        c.send(
          new s.ListSecretsCommand({
            Filters: [{ Key: 'name', Values: [this.prefix] }],
            IncludePlannedDeletion: true,
            MaxResults: 100,
            ...(token ? { NextToken: token } : {}),
          }),
        ),
      );
      for (const s of page.SecretList ?? []) {
        const name = s.Name ?? '';
        const version = name.slice(this.prefix.length);
        if (name.startsWith(this.prefix) && isVersionName(version)) out.push(version);
      }
      next = page.NextToken;
    } while (next);
    return out;
  }

  private conflict(expected: string, now: string | null, pending: string | null): KeystoreError {
    return new KeystoreConflictError(
      `${this.describe()} was changed by someone else since keyctl read it (AWSCURRENT is ${now ? `version ${now}` : 'gone'}, keyctl read ${expected})`,
      `run the command again so it starts from the current keyring${pending ? `; keyctl's change stays staged as AWSPENDING (version ${pending}) and was not made current` : ''}`,
    );
  }

  private restoreHint(versionId: string, name = this.o.secretId): string {
    return (
      `put the previous value back, e.g.: aws secretsmanager update-secret-version-stage --secret-id ${name} --version-stage AWSCURRENT ` +
      `--move-to-version-id <the AWSPREVIOUS version id> --remove-from-version-id ${versionId}`
    );
  }

  private load(): Promise<{ sdk: Sdk; client: SecretsManagerClient }> {
    // The SDK warns on every start under Node < 22 about its releases after January 2027; the
    // version keyctl pins supports Node 20, and cron mail should not fill with that notice.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    this.loaded ??= import('@aws-sdk/client-secrets-manager').then((sdk) => ({
      sdk,
      client: new sdk.SecretsManagerClient({
        ...(this.region ? { region: this.region } : {}),
        ...(this.o.endpoint ? { endpoint: this.o.endpoint } : {}),
        // keyctl retries itself (logged, with the same ClientRequestToken, so a retried write is idempotent).
        maxAttempts: 1,
        requestHandler: { connectionTimeout: this.o.timeoutSeconds * 1000, requestTimeout: this.o.timeoutSeconds * 1000, throwOnRequestTimeout: true },
      }),
    }));
    return this.loaded;
  }

  /** One API call with retries and error translation; `notFound` turns ResourceNotFoundException into null. */
  private call<T>(op: string, secretId: string, fn: (c: SecretsManagerClient, s: Sdk) => Promise<T>): Promise<T>;
  private call<T>(op: string, secretId: string, fn: (c: SecretsManagerClient, s: Sdk) => Promise<T>, o: { notFound: true }): Promise<T | null>;
  private async call<T>(op: string, secretId: string, fn: (c: SecretsManagerClient, s: Sdk) => Promise<T>, o?: { notFound: true }): Promise<T | null> {
    const { sdk, client } = await this.load();
    try {
      return await withRemoteRetry(`${op} ${secretId}`, () => fn(client, sdk), {
        attempts: this.o.maxAttempts,
        log: this.o.log,
        serviceRetryable: (err) => RETRYABLE_NAMES.has(awsErrorName(err)) || (awsHttpStatus(err) ?? 0) >= 500,
        label: (err) => awsErrorName(err),
      });
    } catch (err) {
      if (o?.notFound && awsErrorName(err) === 'ResourceNotFoundException') return null;
      throw this.translate(err, op, secretId);
    }
  }

  private translate(err: unknown, op: string, secretId: string): KeyctlError {
    if (err instanceof KeyctlError) return err;
    const name = awsErrorName(err);
    const message = String((err as { message?: unknown })?.message ?? '');
    const where = this.o.endpoint ?? `secretsmanager.${this.region ?? '<region>'}.amazonaws.com`;
    const net = networkCode(err);
    if (net) return unreachable(SERVICE, where, net, this.o.maxAttempts);
    switch (name) {
      case 'AccessDeniedException': {
        const who = /^User: (\S+) is not authorized/.exec(message)?.[1];
        return new KeystoreError(
          `AccessDeniedException: AWS denied secretsmanager:${op} on ${secretId}${who ? ` to ${who}` : ''}`,
          `allow "secretsmanager:${op}" on this secret in the IAM policy of the identity keyctl runs as${this.o.kmsKeyId ? ` (and kms:Decrypt/kms:GenerateDataKey on ${this.o.kmsKeyId})` : ''}; docs/keystores.md lists the actions each command needs`,
        );
      }
      case 'ResourceNotFoundException':
        return new KeystoreError(
          `ResourceNotFoundException: ${SERVICE} has no secret ${secretId}${this.region ? ` in ${this.region}` : ''}`,
          'check keystore.secretId and keystore.region; to create the keyring there, run `keyctl init --existing-config`',
        );
    }
    return awsCommonError(err, {
      service: SERVICE,
      action: `secretsmanager:${op}`,
      resource: secretId,
      maxAttempts: this.o.maxAttempts,
      retryable: RETRYABLE_NAMES,
    });
  }
}

/** Archive secrets that hold a key now: not scheduled for deletion, with a current value. */
function liveEntries(entries: ArchiveEntrySecret[]): ArchiveEntrySecret[] {
  return entries.filter((e) => !e.scheduled && e.current !== '');
}

async function inBatches<T>(items: T[], size: number, fn: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(fn));
}

function archiveRevision(entries: ArchiveEntrySecret[]): string {
  return createHash('sha256')
    .update(entries.map((e) => `${e.name}@${e.current}`).join('\n'))
    .digest('hex');
}

/**
 * The anchor's secret name: `<secretId>/audit-anchor`. An ARN cannot be extended into a name
 * (CreateSecret refuses its colons), so for `arn:…:secret:NAME-AbCdEf` it is `NAME/audit-anchor`,
 * in the configured region.
 */
export function anchorSecretName(secretId: string): string {
  const arn = /^arn:[^:]+:secretsmanager:[^:]*:[^:]*:secret:(.+?)(?:-[A-Za-z0-9]{6})?$/.exec(secretId);
  return `${arn ? arn[1] : secretId}/audit-anchor`;
}
