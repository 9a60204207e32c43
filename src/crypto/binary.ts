/**
 * Binary field ciphertext, for columns that hold bytes (`bytea`, `BLOB`, `VARBINARY`): the same
 * AES-256-GCM as the text format, laid out as bytes instead of base64 text (docs/format.md,
 * "Binary values"):
 *
 *     0xB1 ‖ version (2 bytes, unsigned big-endian, 1…65535) ‖ nonce (12) ‖ ciphertext ‖ tag (16)
 *
 * The plaintext is bytes: what the column held before it was encrypted. A target column whose type
 * is binary holds these (src/db/columns.ts); src/crypto/field.ts classifies and opens them.
 * Checked against vectors Python made (test/vectors/binary.json). Errors never carry key material or plaintext.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { CiphertextError, type KeyLookup } from './codec.js';
import { NonceSource } from './nonce.js';

/** The first byte of every binary value: the layout, and that the value is keyctl's. */
export const BINARY_MAGIC = 0xb1;
const HEADER_BYTES = 3;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
/** Header, nonce and tag: an empty plaintext encrypts to this many bytes. */
export const BINARY_MIN_BYTES = HEADER_BYTES + NONCE_BYTES + TAG_BYTES;
export const BINARY_MAX_VERSION = 0xffff;
const KEY_BYTES = 32;
const VERSION_RE = /^v([1-9][0-9]*)$/;

const nonces = new NonceSource(NONCE_BYTES);

function asBuffer(value: Uint8Array): Buffer {
  return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

function versionNumberOf(version: string): number {
  const m = VERSION_RE.exec(version);
  const n = m ? Number(m[1]) : Number.NaN;
  if (!m || n > BINARY_MAX_VERSION) throw new RangeError(`"${version}" is not a key version a binary value can carry (v1 … v${BINARY_MAX_VERSION})`);
  return n;
}

/** The 3 bytes every value under `version` starts with. */
export function binaryHeader(version: string): Buffer {
  const n = versionNumberOf(version);
  return Buffer.from([BINARY_MAGIC, n >> 8, n & 0xff]);
}

/** Whether a value has the binary layout (magic byte, a version ≥ 1, room for nonce and tag). */
export function isBinaryWellFormed(value: unknown): boolean {
  if (!(value instanceof Uint8Array) || value.length < BINARY_MIN_BYTES || value[0] !== BINARY_MAGIC) return false;
  const bytes = value as Uint8Array;
  return ((bytes[1]! << 8) | bytes[2]!) !== 0;
}

/** The version a binary value names. Throws CiphertextError (`malformed`) when it has not the layout. */
export function binaryVersionOf(value: unknown): string {
  if (!(value instanceof Uint8Array)) throw new CiphertextError('malformed', 'not a binary value');
  if (value.length === 0 || value[0] !== BINARY_MAGIC) throw new CiphertextError('malformed', 'does not start with the binary format byte 0xB1');
  if (value.length < HEADER_BYTES) throw new CiphertextError('malformed', 'shorter than its 3-byte header');
  const n = (value[1]! << 8) | value[2]!;
  if (n === 0) throw new CiphertextError('malformed', 'names version 0');
  const version = `v${n}`;
  if (value.length < BINARY_MIN_BYTES)
    throw new CiphertextError('truncated', `${value.length} bytes, shorter than header, nonce and tag (${BINARY_MIN_BYTES})`, version);
  return version;
}

export interface BinaryEncryptOptions {
  /** A fixed nonce, for test vectors only. */
  nonce?: Buffer;
}

/** Encrypts bytes under `version` with its 32-byte key. */
export function encryptBinary(plaintext: Uint8Array, version: string, key: Buffer, opts: BinaryEncryptOptions = {}): Buffer {
  if (!Buffer.isBuffer(key) || key.length !== KEY_BYTES)
    throw new RangeError(`a version key is 32 bytes, got ${Buffer.isBuffer(key) ? key.length : typeof key}`);
  const n = versionNumberOf(version);
  const nonce = opts.nonce ?? nonces.next();
  if (nonce.length !== NONCE_BYTES) throw new RangeError(`a nonce is ${NONCE_BYTES} bytes`);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  const body = cipher.update(asBuffer(plaintext));
  const final = cipher.final();
  return Buffer.concat([Buffer.from([BINARY_MAGIC, n >> 8, n & 0xff]), nonce, body, final, cipher.getAuthTag()]);
}

/** Decrypts a binary value with the key of the version it names. Throws CiphertextError. */
export function decryptBinary(value: unknown, keyFor: KeyLookup): Buffer {
  const version = binaryVersionOf(value);
  const bytes = asBuffer(value as Uint8Array);
  const key = keyFor(version);
  if (!key) throw new CiphertextError('unknown-version', `no key for ${version} in the keyring`, version);
  const nonce = bytes.subarray(HEADER_BYTES, HEADER_BYTES + NONCE_BYTES);
  const sealed = bytes.subarray(HEADER_BYTES + NONCE_BYTES);
  const decipher = createDecipheriv('aes-256-gcm', key, nonce);
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
  const out = decipher.update(sealed.subarray(0, sealed.length - TAG_BYTES));
  try {
    return Buffer.concat([out, decipher.final()]);
  } catch {
    throw new CiphertextError('authentication-failed', `the value does not authenticate under key ${version} (tampered, or written with another key)`, version);
  }
}
