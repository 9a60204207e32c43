/**
 * OpenPGP for key backups, through the `openpgp` library (loaded only by the commands that need
 * it). Backups are ordinary OpenPGP messages: `gpg --decrypt FILE` opens them with a
 * recipient's secret key. Messages name files and key IDs, never key material or passphrases.
 */
import { readFile } from 'node:fs/promises';
import type { Key, PrivateKey } from 'openpgp';
import { BackupError, PgpKeyError } from '../base/errors.js';
import { openpgp } from '../crypto/signatures.js';

export interface Recipient {
  file: string;
  /** Primary key fingerprint, upper-case hex (as `gpg --list-keys` shows it). */
  fingerprint: string;
  userIds: string[];
  key: Key;
}

async function readText(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new PgpKeyError(
      `cannot read the ${what} ${file}: ${code === 'ENOENT' ? 'no such file' : (code ?? String(err))}`,
      what === 'recipient key'
        ? 'export it with `gpg --armor --export KEYID > FILE` and list it under backup.recipients (or pass --recipient FILE)'
        : 'pass --identity FILE with the armored secret key (`gpg --armor --export-secret-keys KEYID > FILE`)',
    );
  }
}

/**
 * Every armored public key in a recipient file; each must be able to receive encrypted messages
 * now. A file exported from several keys (`gpg --armor --export A B > FILE`) holds several, and a
 * backup is encrypted to all of them: using only the first would silently lock out the others.
 */
const ARMOR_BLOCK = /-----BEGIN PGP (?:PUBLIC|PRIVATE) KEY BLOCK-----[\s\S]*?-----END PGP (?:PUBLIC|PRIVATE) KEY BLOCK-----/g;

export async function readRecipients(file: string): Promise<Recipient[]> {
  const pgp = await openpgp();
  const text = await readText(file, 'recipient key');
  // openpgp reads one armor block per call; `cat a.asc b.asc > team.asc` holds several blocks.
  const blocks = text.match(ARMOR_BLOCK) ?? [text];
  const keys: Key[] = [];
  try {
    for (const block of blocks) keys.push(...(await pgp.readKeys({ armoredKeys: block })));
  } catch {
    throw new PgpKeyError(`recipient ${file} is not an armored OpenPGP public key`, 'export it with `gpg --armor --export KEYID > FILE`');
  }
  const out: Recipient[] = [];
  for (const key of keys) {
    const fp = key.getFingerprint().toUpperCase();
    if (key.isPrivate()) {
      throw new PgpKeyError(
        `recipient ${file} holds a secret key; a recipient must be a public key`,
        'export only the public part: `gpg --armor --export KEYID > FILE`, and keep the secret key offline',
      );
    }
    try {
      await key.getEncryptionKey();
    } catch (err) {
      throw new PgpKeyError(
        `recipient ${file}${keys.length > 1 ? ` (key ${out.length + 1} of ${keys.length},` : ' ('} ${fp}) has no usable encryption key: ${(err as Error).message}`,
        'renew or replace the key (expired, revoked or signing-only keys cannot receive backups), or remove it from the file',
      );
    }
    if (!out.some((r) => r.fingerprint === fp)) out.push({ file, fingerprint: fp, userIds: key.getUserIDs(), key });
  }
  return out;
}

export async function encryptTo(recipients: Recipient[], data: Uint8Array): Promise<Uint8Array> {
  const pgp = await openpgp();
  const message = await pgp.createMessage({ binary: data });
  return pgp.encrypt({ message, encryptionKeys: recipients.map((r) => r.key), format: 'binary' });
}

/** An armored secret key, unlocked with the passphrase when it has one. */
export async function readIdentity(file: string, passphrase: string | undefined): Promise<PrivateKey> {
  const pgp = await openpgp();
  const text = await readText(file, 'identity');
  let key: PrivateKey;
  try {
    key = await pgp.readPrivateKey({ armoredKey: text });
  } catch {
    throw new PgpKeyError(`identity ${file} is not an armored OpenPGP secret key`, 'export it with `gpg --armor --export-secret-keys KEYID > FILE`');
  }
  if (key.isDecrypted()) return key;
  if (passphrase === undefined) {
    throw new PgpKeyError(`identity ${file} is protected by a passphrase`, 'put the passphrase in an environment variable and pass --passphrase-env VAR');
  }
  try {
    return await pgp.decryptKey({ privateKey: key, passphrase });
  } catch {
    throw new PgpKeyError(`wrong passphrase for identity ${file}`, 'check the variable named by --passphrase-env');
  }
}

/** Decrypt a backup; a message not encrypted to `identity` and a damaged message are told apart. */
export async function decryptWith(identity: PrivateKey, identityFile: string, data: Uint8Array, backupFile: string): Promise<Uint8Array> {
  const pgp = await openpgp();
  let message: Awaited<ReturnType<typeof pgp.readMessage>>;
  try {
    message = await pgp.readMessage({ binaryMessage: data });
  } catch {
    throw new BackupError(`${backupFile} is not an OpenPGP message (damaged or not a keyctl backup)`, 'use another backup; `keyctl backup` writes a new one');
  }
  const intended = message.getEncryptionKeyIDs().map((id) => id.toHex().toUpperCase());
  const ours = identity.getKeys().map((k) => k.getKeyID().toHex().toUpperCase());
  if (!intended.some((id) => ours.includes(id))) {
    throw new PgpKeyError(
      `identity ${identityFile} cannot open ${backupFile}: it was encrypted to key ID(s) ${intended.join(', ') || '(none)'}, not to this key`,
      'use the secret key of one of the backup recipients',
    );
  }
  try {
    const { data: plain } = await pgp.decrypt({ message, decryptionKeys: identity, format: 'binary' });
    return plain;
  } catch (err) {
    throw new BackupError(`${backupFile} could not be decrypted: ${(err as Error).message}`, 'the file is damaged; use another backup');
  }
}
