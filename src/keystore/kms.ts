/**
 * The `aws-kms` wrapper: data keys made by KMS GenerateDataKey under the configured KMS key
 * (`keyId`: key id, key ARN, alias name or alias ARN) and unwrapped with Decrypt, each bound to
 * the encryption context of wrap.ts. ReEncrypt moves a blob to another KMS key without the data
 * key leaving KMS. `@aws-sdk/client-kms` is loaded on first use; credentials come from the SDK's
 * default chain (environment, profile, SSO, web identity, instance role), never from keyctl.yaml.
 *
 * Every Decrypt names the KMS key the stored blob says wrapped it (KeyId, as AWS recommends), and
 * only a key of the configured key's account and region is accepted: a blob planted under a key
 * elsewhere is refused before anything is sent (assertTrusted).
 */
import type { KMSClient } from '@aws-sdk/client-kms';
import { KeyctlError, KeystoreError } from '../base/errors.js';
import type { Logger } from '../base/logger.js';
import { awsCommonError, awsErrorName, awsHttpStatus, networkCode, unreachable, withRemoteRetry } from './remote.js';
import { encryptionContext, type KekHealth, type KekState, type KeyWrapper, type WrapContext, type WrappedKey } from './wrap.js';

type Sdk = typeof import('@aws-sdk/client-kms');

export interface KmsWrapperOptions {
  keyId: string;
  region?: string | undefined;
  endpoint?: string | undefined;
  timeoutSeconds: number;
  maxAttempts: number;
  log: Logger;
}

const SERVICE = 'AWS KMS';
/** KMS's "try again" answers (API reference, "Common Errors" and each operation's errors). */
const RETRYABLE = new Set(['ThrottlingException', 'KMSInternalException', 'DependencyTimeoutException', 'InternalFailure', 'ServiceUnavailable']);

export class KmsWrapper implements KeyWrapper {
  readonly provider = 'aws-kms' as const;
  private readonly o: KmsWrapperOptions;
  private readonly region: string | undefined;
  private loaded: Promise<{ sdk: Sdk; client: KMSClient }> | undefined;
  /** Account scopes a blob's KEK may be in besides the configured key's: a `rewrap --to` destination's. */
  private readonly trustedScopes = new Set<string>();
  /** keyId (alias, id, ARN) → key ARN, once per process. */
  private readonly arns = new Map<string, Promise<string>>();

  constructor(o: KmsWrapperOptions) {
    this.o = o;
    this.region = o.region ?? (o.keyId.startsWith('arn:') ? o.keyId.split(':')[3] : undefined);
  }

  describe(): string {
    return `AWS KMS key ${this.o.keyId}${this.region ? ` in ${this.region}` : ''}`;
  }

  async generate(ctx: WrapContext): Promise<{ key: Buffer; wrapped: WrappedKey }> {
    const out = await this.call('GenerateDataKey', this.o.keyId, (c, s) =>
      c.send(new s.GenerateDataKeyCommand({ KeyId: this.o.keyId, KeySpec: 'AES_256', EncryptionContext: encryptionContext(ctx) })),
    );
    return { key: Buffer.from(out.Plaintext!), wrapped: { kek: out.KeyId!, blob: Buffer.from(out.CiphertextBlob!).toString('base64') } };
  }

  async wrap(key: Buffer, ctx: WrapContext): Promise<WrappedKey> {
    const out = await this.call('Encrypt', this.o.keyId, (c, s) =>
      c.send(new s.EncryptCommand({ KeyId: this.o.keyId, Plaintext: key, EncryptionContext: encryptionContext(ctx) })),
    );
    return { kek: out.KeyId!, blob: Buffer.from(out.CiphertextBlob!).toString('base64') };
  }

  async unwrap(w: WrappedKey, ctx: WrapContext): Promise<Buffer> {
    await this.assertTrusted(w, ctx);
    const out = await this.call(
      'Decrypt',
      w.kek,
      (c, s) => c.send(new s.DecryptCommand({ KeyId: w.kek, CiphertextBlob: Buffer.from(w.blob, 'base64'), EncryptionContext: encryptionContext(ctx) })),
      ctx,
    );
    return Buffer.from(out.Plaintext!);
  }

  async rewrap(w: WrappedKey, ctx: WrapContext, to?: string): Promise<WrappedKey> {
    await this.assertTrusted(w, ctx);
    const destination = to ?? this.o.keyId;
    // The operator named the destination: blobs under it (read back below, and later) are trusted too.
    const scope = kmsScope(await this.arnOf(destination));
    if (scope !== undefined) this.trustedScopes.add(scope);
    const context = encryptionContext(ctx);
    const out = await this.call(
      'ReEncrypt',
      `${w.kek} → ${destination}`,
      (c, s) =>
        c.send(
          new s.ReEncryptCommand({
            CiphertextBlob: Buffer.from(w.blob, 'base64'),
            SourceKeyId: w.kek,
            SourceEncryptionContext: context,
            DestinationKeyId: destination,
            DestinationEncryptionContext: context,
          }),
        ),
      ctx,
    );
    return { kek: out.KeyId!, blob: Buffer.from(out.CiphertextBlob!).toString('base64') };
  }

  async isCurrent(w: WrappedKey, to?: string): Promise<boolean> {
    return w.kek === (await this.arnOf(to ?? this.o.keyId));
  }

  /**
   * The KEK a stored blob names must be a KMS key of the configured key's partition, account and
   * region: the file or table is not trusted to pick the key its own blob is decrypted with (a
   * writer of it could otherwise plant a data key under a KMS key of their own).
   */
  private async assertTrusted(w: WrappedKey, ctx: WrapContext): Promise<void> {
    const theirs = kmsScope(w.kek);
    if (theirs !== undefined && (theirs === kmsScope(await this.arnOf(this.o.keyId)) || this.trustedScopes.has(theirs))) return;
    throw new KeystoreError(
      `${ctx.version} of keyring ${ctx.keyring} names ${w.kek} as its KMS key, which is not a key of the account and region of keystore.keyId (${this.o.keyId}); keyctl did not send it to KMS`,
      'the wrapped keys were edited or replaced: restore them from a backup (keyctl restore), and find out who could write them',
    );
  }

  /** The key ARN behind a key id or alias (DescribeKey). */
  arnOf(keyId: string): Promise<string> {
    let arn = this.arns.get(keyId);
    if (!arn) {
      arn = this.call('DescribeKey', keyId, (c, s) => c.send(new s.DescribeKeyCommand({ KeyId: keyId }))).then((out) => out.KeyMetadata!.Arn!);
      const asked = arn;
      asked.catch(() => {
        if (this.arns.get(keyId) === asked) this.arns.delete(keyId);
      });
      this.arns.set(keyId, arn);
    }
    return arn;
  }

  async health(kek = this.o.keyId): Promise<KekHealth> {
    const started = performance.now();
    try {
      const { client, sdk } = await this.load();
      const out = await client.send(new sdk.DescribeKeyCommand({ KeyId: kek }));
      const state = out.KeyMetadata?.KeyState;
      // Unavailable (a custom key store disconnected), PendingImport (no key material) and
      // Creating cannot decrypt either: reported as disabled, with the state named. Updating (a
      // multi-Region key changing its primary region) still decrypts.
      const mapped: KekState =
        state === 'Enabled' || state === 'Updating'
          ? 'enabled'
          : state?.startsWith('PendingDeletion') || state === 'PendingReplicaDeletion'
            ? 'pending-deletion'
            : state === undefined
              ? 'unknown'
              : 'disabled';
      return {
        kek,
        reachable: true,
        latencyMs: Math.round(performance.now() - started),
        state: mapped,
        ...(mapped === 'enabled'
          ? {}
          : { problem: `KeyState ${state ?? '?'}${out.KeyMetadata?.DeletionDate ? `, deletion on ${out.KeyMetadata.DeletionDate.toISOString()}` : ''}` }),
      };
    } catch (err) {
      const latencyMs = Math.round(performance.now() - started);
      if (awsErrorName(err) === 'NotFoundException')
        return { kek, reachable: true, latencyMs, state: 'missing', problem: 'NotFoundException: no such KMS key' };
      const net = networkCode(err);
      return { kek, reachable: false, latencyMs: null, state: 'unknown', problem: net ?? awsErrorName(err) };
    }
  }

  private load(): Promise<{ sdk: Sdk; client: KMSClient }> {
    // As in aws.ts: no Node-version notice in cron mail.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    this.loaded ??= import('@aws-sdk/client-kms').then((sdk) => ({
      sdk,
      client: new sdk.KMSClient({
        ...(this.region ? { region: this.region } : {}),
        ...(this.o.endpoint ? { endpoint: this.o.endpoint } : {}),
        // keyctl retries itself, each retry logged.
        maxAttempts: 1,
        requestHandler: { connectionTimeout: this.o.timeoutSeconds * 1000, requestTimeout: this.o.timeoutSeconds * 1000, throwOnRequestTimeout: true },
      }),
    }));
    return this.loaded;
  }

  private async call<T>(op: string, key: string, fn: (c: KMSClient, s: Sdk) => Promise<T>, ctx?: WrapContext): Promise<T> {
    const { sdk, client } = await this.load();
    try {
      return await withRemoteRetry(`kms:${op} ${key}`, () => fn(client, sdk), {
        attempts: this.o.maxAttempts,
        log: this.o.log,
        serviceRetryable: (err) => RETRYABLE.has(awsErrorName(err)) || (awsHttpStatus(err) ?? 0) >= 500,
        label: (err) => awsErrorName(err),
      });
    } catch (err) {
      throw this.translate(err, op, key, ctx);
    }
  }

  private translate(err: unknown, op: string, key: string, ctx: WrapContext | undefined): KeyctlError {
    if (err instanceof KeyctlError) return err;
    const name = awsErrorName(err);
    const message = String((err as { message?: unknown })?.message ?? '');
    const net = networkCode(err);
    if (net) return unreachable(SERVICE, this.o.endpoint ?? `kms.${this.region ?? '<region>'}.amazonaws.com`, net, this.o.maxAttempts);
    const what = ctx ? ` (${ctx.version} of keyring ${ctx.keyring})` : '';
    switch (name) {
      case 'AccessDeniedException':
        return new KeystoreError(
          `AccessDeniedException: AWS denied kms:${op} on ${key}${what}`,
          `allow "kms:${op}" on this key to the identity keyctl runs as (key policy or IAM); docs/keystores.md lists the actions each command needs`,
        );
      case 'DisabledException':
        return new KeystoreError(
          `DisabledException: the KMS key ${key} is disabled; kms:${op}${what} refused`,
          `enable it (aws kms enable-key --key-id ${key.split(' → ').pop()}) if it was disabled by mistake; while it is disabled no application can unwrap the keys it wraps`,
        );
      case 'KMSInvalidStateException':
        return new KeystoreError(
          `KMSInvalidStateException: the KMS key ${key} cannot be used for kms:${op}${what}: ${message}`,
          `if it is pending deletion, cancel that now (aws kms cancel-key-deletion --key-id ${key.split(' → ').pop()}) and enable it: once deleted, every key it wraps is lost`,
        );
      case 'InvalidCiphertextException':
        return new KeystoreError(
          `InvalidCiphertextException: KMS cannot decrypt the wrapped key${what} under its encryption context`,
          'the blob was altered, or moved from another keyring, version or tenant; restore the wrapped keyring file from a backup (keyctl backup holds the blobs)',
        );
      case 'IncorrectKeyException':
        return new KeystoreError(
          `IncorrectKeyException: the wrapped key${what} was not made by ${key}, the KMS key the file names for it`,
          'the file was edited or the blob replaced; restore the wrapped keyring file from a backup',
        );
      case 'NotFoundException':
        return new KeystoreError(
          `NotFoundException: ${SERVICE} has no key ${key}${this.region ? ` in ${this.region}` : ''}`,
          'check keystore.keyId and keystore.region',
        );
    }
    return awsCommonError(err, { service: SERVICE, action: `kms:${op}`, resource: key, maxAttempts: this.o.maxAttempts, retryable: RETRYABLE });
  }
}

/**
 * Where a KMS key lives, for assertTrusted: partition, region and account — and for a multi-Region
 * key (`mrk-…`) partition and account only, since its replicas share the id in other regions.
 */
function kmsScope(arn: string): string | undefined {
  const m = /^arn:([^:]+):kms:([^:]+):(\d{12}):key\/([^/]+)$/.exec(arn);
  if (!m) return undefined;
  return m[4]!.startsWith('mrk-') ? `${m[1]}:*:${m[3]}` : `${m[1]}:${m[2]}:${m[3]}`;
}
