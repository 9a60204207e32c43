/**
 * The JSON document inside a backup (what `gpg --decrypt FILE` prints). docs/backup.md
 * describes it field by field; change both together, and bump formatVersion on any change an
 * older keyctl could not read.
 */
import { z } from 'zod';
import { BackupError } from '../base/errors.js';

export const BACKUP_FORMAT = 'keyctl-key-backup';
export const BACKUP_FORMAT_VERSION = 1;
/** A backup with a key entry that holds only its wrapped blob (backup.unwrappedKeys: false): keyctl before it cannot read one. */
export const BACKUP_FORMAT_VERSION_WRAPPED_ONLY = 2;

const KeyEntry = z.object({
  version: z.string(),
  /** `retired`: kept for database backups made before its retirement (policy.retiredKeyRetentionDays). */
  state: z.enum(['primary', 'decrypt-only', 'archived', 'retired']),
  fingerprint: z.string(),
  compromised: z.boolean(),
  createdAt: z.string(),
  /** base64 of the 32 key bytes; absent when the backup holds only the wrapped blob (format version 2). */
  key: z.string().optional(),
  /** Envelope keystores: the data key as stored, wrapped by the key-encryption key (never key material in the clear). */
  wrapped: z.object({ kek: z.string(), blob: z.string() }).optional(),
});

const RegistryEntry = z.object({
  version: z.string(),
  state: z.enum(['primary', 'decrypt-only', 'archived', 'retired']),
  fingerprint: z.string(),
  material: z.enum(['present', 'destroyed']),
});

export const BackupDocumentSchema = z.object({
  format: z.literal(BACKUP_FORMAT),
  formatVersion: z.union([z.literal(BACKUP_FORMAT_VERSION), z.literal(BACKUP_FORMAT_VERSION_WRAPPED_ONLY)]),
  keyring: z.string(),
  createdAt: z.string(),
  primary: z.string(),
  database: z.object({ client: z.string() }),
  rotation: z.object({ id: z.number(), phase: z.string(), oldVersion: z.string().nullable(), newVersion: z.string().nullable() }).nullable(),
  keys: z.array(KeyEntry.refine((k) => k.key !== undefined || k.wrapped !== undefined, 'a key entry needs "key" or "wrapped"')),
  registry: z.array(RegistryEntry),
});

export type BackupDocument = z.infer<typeof BackupDocumentSchema>;

export function parseBackupDocument(bytes: Uint8Array, file: string): BackupDocument {
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    throw new BackupError(`${file} decrypted, but holds no JSON document`, 'it is not a keyctl backup; use another file');
  }
  const r = BackupDocumentSchema.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new BackupError(
      `${file} is not a keyctl key backup this version can read: ${issue.path.join('.') || '(document)'}: ${issue.message}`,
      `keyctl reads ${BACKUP_FORMAT} format versions ${BACKUP_FORMAT_VERSION} and ${BACKUP_FORMAT_VERSION_WRAPPED_ONLY}`,
    );
  }
  return r.data;
}
