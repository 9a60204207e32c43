/**
 * OpenPGP detached signatures for approvals (docs/approvals.md), through the `openpgp` library
 * (loaded only by the commands that need it). A signature made by `gpg --detach-sign [--armor]`
 * over the exact canonical bytes verifies here, and one made here verifies with `gpg --verify`.
 * Messages name files and key fingerprints, never key material or passphrases.
 */
import { readFile } from 'node:fs/promises';
import type { Key, PrivateKey } from 'openpgp';

export type OpenPgp = typeof import('openpgp');
let lib: Promise<OpenPgp> | undefined;
/** The openpgp library, loaded once and only by the commands that need it (backups, approvals). */
export const openpgp = (): Promise<OpenPgp> => (lib ??= import('openpgp'));

export interface PublicSigningKey {
  /** Primary key fingerprint, upper-case hex (as `gpg --list-keys` shows it). */
  fingerprint: string;
  key: Key;
}

/** Reading a key file: the key, or what is wrong with it (every problem is collected by the caller). */
export type KeyFileResult =
  | { ok: true; key: PublicSigningKey }
  /** `unusable`: a valid key that cannot sign now (expired, revoked); otherwise the file is wrong. */
  | { ok: false; problem: string; unusable?: boolean };

async function readText(file: string): Promise<string | { problem: string }> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { problem: code === 'ENOENT' ? 'no such file' : `cannot read it (${code ?? String(err)})` };
  }
}

/** One armored OpenPGP public key that can sign (now). */
export async function readPublicSigningKey(file: string): Promise<KeyFileResult> {
  const text = await readText(file);
  if (typeof text !== 'string') return { ok: false, problem: text.problem };
  const pgp = await openpgp();
  let keys: Key[];
  try {
    keys = await pgp.readKeys({ armoredKeys: text });
  } catch {
    return { ok: false, problem: 'not an armored OpenPGP public key (export one with `gpg --armor --export KEYID > FILE`)' };
  }
  if (keys.length !== 1) return { ok: false, problem: `holds ${keys.length} keys; an approver has exactly one` };
  const key = keys[0]!;
  if (key.isPrivate()) return { ok: false, problem: 'holds a secret key; list only the public part (`gpg --armor --export KEYID`)' };
  try {
    await key.getSigningKey();
  } catch (err) {
    return { ok: false, problem: `has no usable signing key (${(err as Error).message})`, unusable: true };
  }
  return { ok: true, key: { fingerprint: key.getFingerprint().toUpperCase(), key } };
}

/** A detached, armored signature over `data` with the secret key in `file` (decrypted with `passphrase` when it has one). */
export async function signDetached(data: Uint8Array, file: string, passphrase: string | undefined): Promise<{ signature: string; fingerprint: string }> {
  const text = await readText(file);
  if (typeof text !== 'string') throw new SigningKeyError(`cannot read the secret key ${file}: ${text.problem}`);
  const pgp = await openpgp();
  let key: PrivateKey;
  try {
    key = await pgp.readPrivateKey({ armoredKey: text });
  } catch {
    throw new SigningKeyError(`${file} is not an armored OpenPGP secret key (export one with \`gpg --armor --export-secret-keys KEYID > FILE\`)`);
  }
  if (!key.isDecrypted()) {
    if (!passphrase) throw new SigningKeyError(`the secret key ${file} is protected by a passphrase: pass --passphrase-env VAR`);
    try {
      key = await pgp.decryptKey({ privateKey: key, passphrase });
    } catch {
      throw new SigningKeyError(`the passphrase does not unlock the secret key ${file}`);
    }
  }
  const message = await pgp.createMessage({ binary: data });
  const signature = await pgp.sign({ message, signingKeys: key, detached: true, format: 'armored' });
  return { signature: String(signature), fingerprint: key.getFingerprint().toUpperCase() };
}

export class SigningKeyError extends Error {
  override name = 'SigningKeyError';
}

export type SignatureCheck =
  /** `armored`: the one signature packet, re-armored (nothing else a file held is kept). */
  | { ok: true; fingerprint: string; signedAt: Date; armored: string }
  | {
      ok: false;
      /** Why: not a signature, by a key not listed, or not over these bytes. */
      reason: string;
      /** The signing key's fingerprint or key ID, when the signature could be read. */
      signer: string | null;
    };

/**
 * Check a detached signature (armored or binary) over `data` against `keys`. Exactly one signature
 * packet is accepted: a file holding several would let one upload speak for several people.
 */
export async function verifyDetached(data: Uint8Array, signature: string | Uint8Array, keys: readonly PublicSigningKey[]): Promise<SignatureCheck> {
  const pgp = await openpgp();
  let sig: Awaited<ReturnType<OpenPgp['readSignature']>>;
  try {
    sig = typeof signature === 'string' ? await pgp.readSignature({ armoredSignature: signature }) : await pgp.readSignature({ binarySignature: signature });
  } catch {
    return { ok: false, reason: 'not an OpenPGP signature (make one with `gpg --detach-sign --armor`)', signer: null };
  }
  if (sig.packets.length !== 1) return { ok: false, reason: `holds ${sig.packets.length} signatures; add one signature per file`, signer: null };
  const packet = sig.packets[0]!;
  const issuer = packet.issuerKeyID.toHex().toUpperCase();
  const signer = keys.find((k) => k.key.getKeys(packet.issuerKeyID).length > 0);
  if (!signer) return { ok: false, reason: `made by key ${issuer}, which is not an approver's key in approvals.approvers`, signer: issuer };
  const message = await pgp.createMessage({ binary: data });
  try {
    const result = await pgp.verify({ message, signature: sig, verificationKeys: signer.key, expectSigned: true, format: 'binary' });
    if (result.signatures.length !== 1) throw new Error(`${result.signatures.length} signatures`);
    await result.signatures[0]!.verified;
  } catch (err) {
    const why = (err as Error).message;
    return {
      ok: false,
      reason: /signed digest did not match|invalid signature/i.test(why)
        ? 'does not sign this request (it was made over other text: another request, action, rotation, key versions or keyring)'
        : `does not verify (${why})`,
      signer: signer.fingerprint,
    };
  }
  return { ok: true, fingerprint: signer.fingerprint, signedAt: packet.created ?? new Date(0), armored: sig.armor() };
}
