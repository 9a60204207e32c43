/**
 * The keystore interface. A keystore holds two documents:
 * - the *published keyring document* that applications read: which version is primary and the
 *   material of every version they may decrypt with;
 * - the *archive*: versions taken out of the published keyring but kept — for rollback after
 *   promote, or for the long term when `policy.retiredKeys: archive`.
 * Key material lives only here — the database registry keeps fingerprints.
 */

export interface KeyringDocument {
  keyring: string;
  /** The version new writes use. */
  primary: string;
  /** version name (v1, v2, …) → 32 bytes of key material. */
  keys: Map<string, Buffer>;
}

export interface KeystoreSnapshot {
  doc: KeyringDocument;
  /**
   * Opaque token for optimistic concurrency: pass it back to `write` so a keystore changed by
   * someone else since this read is not silently overwritten.
   */
  revision: string;
}

export type ArchiveStatus = 'archived' | 'retired';

export interface ArchivedKey {
  key: Buffer;
  /** archived: kept for rollback; retired: kept long-term after retire. */
  status: ArchiveStatus;
  /** ISO-8601 UTC time it entered this status. */
  since: string;
}

export interface ArchiveDocument {
  keyring: string;
  keys: Map<string, ArchivedKey>;
}

export interface ArchiveSnapshot {
  doc: ArchiveDocument;
  /** null when no archive exists yet. */
  revision: string | null;
}

/**
 * The audit anchor as the keystore stores it: a small keyctl-only document beside the keyring
 * (never the published one applications read), parsed and MAC-checked by src/core/audit-anchor.ts.
 */
export interface AnchorSnapshot {
  /** The stored text; null when no anchor exists yet. */
  text: string | null;
  /** Revision for the check-and-set of `writeAnchor`; null when no anchor exists yet. */
  revision: string | null;
  /** Where it is, for messages (never contains secrets). */
  where: string;
}

export interface Keystore {
  readonly provider: string;
  /** False for providers keyctl can only read from (environment variables). */
  readonly writable: boolean;
  /** Where the keys are, for messages (never contains secrets). */
  describe(): string;
  /**
   * A read-only provider: what the operator would set by hand to add version `next` (the keys
   * `present` stay) and later make it primary instead of `primary`, one line per step.
   */
  howToRotate?(present: readonly string[], primary: string | undefined, next: string): string;
  /**
   * A new data key for `version` made by the key service (envelope providers: KMS
   * GenerateDataKey, Transit datakey), stored by the next `write` that holds it. Absent: keyctl
   * makes the key itself (crypto.randomBytes).
   */
  newKey?(keyring: string, version: string): Promise<Buffer>;
  /**
   * Where a destroyed version's material is really gone, for retire and purge to say; absent when
   * removing it from the keystore destroys it.
   */
  destructionNote?(): string;
  /** The published keyring, or null when the keystore holds none yet. */
  read(): Promise<KeystoreSnapshot | null>;
  /**
   * Replace the published keyring. `expectedRevision` is the revision read before (null when
   * creating); a mismatch throws KeystoreError instead of overwriting. Throws
   * KeystoreReadOnlyError for read-only providers, naming what the operator should set instead.
   */
  write(doc: KeyringDocument, expectedRevision: string | null, why: string): Promise<void>;
  /** The archive (empty, revision null, when there is none). */
  readArchive(keyring: string): Promise<ArchiveSnapshot>;
  /** Replace the archive, with the same revision check as `write`. */
  writeArchive(doc: ArchiveDocument, expectedRevision: string | null, why: string): Promise<void>;
  /**
   * The audit chain's anchor (see docs/rotation.md, "Audit evidence"). Absent on providers that
   * cannot store it (env: read-only). `writeAnchor` is a check-and-set like `write`.
   */
  readAnchor?(keyring: string): Promise<AnchorSnapshot>;
  /**
   * Crypto-shredding (docs/tenants.md): remove the published keyring and its archive for good, so
   * no key of the keyring is left in this keystore. The audit anchor stays (it holds no key).
   * Absent on providers that cannot do it yet.
   */
  destroyKeyring?(keyring: string, why: string): Promise<void>;
  writeAnchor?(keyring: string, text: string, expectedRevision: string | null): Promise<void>;
}
