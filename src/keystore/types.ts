/**
 * The keystore interface. A keystore holds the *published keyring document* that applications
 * read: which version is primary and the material of every version they may decrypt with.
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

export interface Keystore {
  readonly provider: string;
  /** False for providers keyctl can only read from (environment variables). */
  readonly writable: boolean;
  /** Where the keys are, for messages (never contains secrets). */
  describe(): string;
  /** The published keyring, or null when the keystore holds none yet. */
  read(): Promise<KeystoreSnapshot | null>;
  /**
   * Replace the published keyring. `expectedRevision` is the revision read before (null when
   * creating); a mismatch throws KeystoreError instead of overwriting. Throws
   * KeystoreReadOnlyError for read-only providers, naming what the operator should set instead.
   */
  write(doc: KeyringDocument, expectedRevision: string | null, why: string): Promise<void>;
}
