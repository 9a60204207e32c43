/**
 * Envelope encryption: a key-encryption key (KEK) held by a key service — an AWS KMS key or a
 * Vault Transit key — wraps each data key, and keyctl stores only the wrapped blobs. A wrapper is
 * the few operations keyctl needs from such a service; envelope.ts stores what they return.
 *
 * Every wrap is bound to an encryption context naming the keyring, the version and (with tenancy)
 * the tenant, so a blob moved to another keyring or version does not unwrap there.
 */

/** The context a data key is wrapped under; the exact pairs applications pass back to unwrap it. */
export interface WrapContext {
  keyring: string;
  version: string;
  tenant?: string | undefined;
}

/** A data key as stored: the KEK that wraps it and the service's ciphertext. */
export interface WrappedKey {
  /** The KEK: a KMS key ARN, or a Transit key as `<mount>/<key>` with the version that wrapped it (`:v3`). */
  kek: string;
  /** KMS: the base64 CiphertextBlob; Transit: the `vault:v<N>:…` ciphertext. */
  blob: string;
}

export type KekState = 'enabled' | 'disabled' | 'pending-deletion' | 'missing' | 'unknown';

/** What `status` and `metrics` report about a KEK. */
export interface KekHealth {
  /** The KEK as configured (ARN, alias, or Transit key). */
  kek: string;
  reachable: boolean;
  /** Milliseconds for the service's answer (null when it did not answer). */
  latencyMs: number | null;
  state: KekState;
  /** The service's words when it did not answer or the KEK is not usable (never a secret). */
  problem?: string;
}

export interface KeyWrapper {
  readonly provider: 'aws-kms' | 'vault-transit';
  /** The configured KEK and service, for messages. */
  describe(): string;
  /** A new 32-byte data key from the service, with its wrapped form (GenerateDataKey / Transit datakey). */
  generate(ctx: WrapContext): Promise<{ key: Buffer; wrapped: WrappedKey }>;
  /** Wrap a data key keyctl already holds (a restored or imported key). */
  wrap(key: Buffer, ctx: WrapContext): Promise<WrappedKey>;
  unwrap(wrapped: WrappedKey, ctx: WrapContext): Promise<Buffer>;
  /**
   * Re-wrap in the service (KMS ReEncrypt / Transit rewrap: keyctl sends no key): under `to`
   * (a KMS key), or under the configured KEK's newest version.
   */
  rewrap(wrapped: WrappedKey, ctx: WrapContext, to?: string): Promise<WrappedKey>;
  /** Whether `wrapped` is already under the KEK `rewrap` would use (`to`, else the configured one at its newest version). */
  isCurrent(wrapped: WrappedKey, to?: string): Promise<boolean>;
  /** The KEK's state and the service's latency; never throws. `kek`: another KEK than the configured one. */
  health(kek?: string): Promise<KekHealth>;
}

/** The encryption context as AWS KMS takes it (string pairs); Transit gets the same pairs as bytes. */
export function encryptionContext(ctx: WrapContext): Record<string, string> {
  return {
    'keyctl:keyring': ctx.keyring,
    'keyctl:version': ctx.version,
    ...(ctx.tenant !== undefined ? { 'keyctl:tenant': ctx.tenant } : {}),
  };
}

/** The context as bytes, for a derived Transit key: the pairs as canonical JSON, keys sorted. */
export function contextBytes(ctx: WrapContext): Buffer {
  const pairs = encryptionContext(ctx);
  const sorted = Object.fromEntries(
    Object.keys(pairs)
      .sort()
      .map((k) => [k, pairs[k]]),
  );
  return Buffer.from(JSON.stringify(sorted), 'utf8');
}
