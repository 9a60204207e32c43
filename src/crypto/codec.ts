/**
 * Field ciphertext codecs. The default codec is the versioned AES-256-GCM string format
 * specified in docs/format.md:
 *
 *     v<N>:<base64 nonce (12 bytes)>:<base64 ciphertext ‖ 16-byte tag>
 *
 * Codecs sit behind the `Codec` interface so other formats can be added without touching the
 * engine. Every failure is a `CiphertextError` with a reason; decrypt never returns wrong
 * plaintext (GCM authenticates) and never throws anything else for bad input.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { isBase64 } from './base64.js';
import { NonceSource } from './nonce.js';

export type CiphertextErrorReason =
  /** Not of the form v<N>:<nonce>:<ciphertext> with valid base64 parts. */
  | 'malformed'
  /** Well-formed but the ciphertext is shorter than the 16-byte tag. */
  | 'truncated'
  /** The version it names has no key in the keyring given. */
  | 'unknown-version'
  /** The tag does not verify: tampered, or encrypted under a different key. */
  | 'authentication-failed'
  /** Authenticated, but the plaintext is not valid UTF-8. */
  | 'invalid-utf8';

export class CiphertextError extends Error {
  readonly reason: CiphertextErrorReason;
  /** The version the value claims, when it could be read. */
  readonly version: string | undefined;
  constructor(reason: CiphertextErrorReason, message: string, version?: string) {
    super(message);
    this.name = 'CiphertextError';
    this.reason = reason;
    this.version = version;
  }
}

/** Looks up the key for a version; undefined when the keyring has none. */
export type KeyLookup = (version: string) => Buffer | undefined;

export interface Codec {
  readonly name: string;
  /**
   * A regular expression, valid in JavaScript, PostgreSQL (`~`), MySQL/MariaDB (`REGEXP`) and
   * SQLite (keyctl registers a REGEXP function), that matches exactly the well-formed values.
   * Database-side counts use it, so what SQL calls unparseable is what the codec calls malformed.
   * `$` means the very end of the value, as in JavaScript and PostgreSQL; a dialect whose engine
   * also matches `$` before a final newline (MySQL, MariaDB) rewrites it (test/integration/smaller-fixes).
   */
  readonly shapePattern: string;
  /** The version a value claims, without decrypting. Throws CiphertextError('malformed'). */
  versionOf(value: string): string;
  encrypt(plaintext: string, version: string, key: Buffer): string;
  decrypt(value: string, keyFor: KeyLookup): string;
}

const B64 = '[A-Za-z0-9+/]';
/** ≥ 5 full base64 quads plus a final (possibly padded) quad = at least 16 decoded bytes (the tag). */
export const AES_GCM_V1_SHAPE = `^v[0-9]+:${B64}{16}:(${B64}{4}){5,}(${B64}{4}|${B64}{2}==|${B64}{3}=)$`;

/**
 * Values that claim to be ciphertext: `v<N>:` followed by a base64 character. One that does not
 * decode is damaged ciphertext, never plaintext, so keyctl cannot encrypt a value twice. Everything
 * else that is not null is plaintext where a target says `plaintext: encrypt`. No `$`: the same
 * pattern works in JavaScript, PostgreSQL, MySQL/MariaDB and SQLite.
 */
export const CLAIMS_CIPHERTEXT = '^v[0-9]+:[A-Za-z0-9+/=]';
const CLAIMS_RE = new RegExp(CLAIMS_CIPHERTEXT);

/** True when the value claims to be ciphertext (see CLAIMS_CIPHERTEXT). */
export function claimsCiphertext(value: string): boolean {
  return CLAIMS_RE.test(value);
}

const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;
const NONCE_RE = /^[A-Za-z0-9+/]{16}$/;
const VERSION_RE = /^v[0-9]+$/;
// ignoreBOM: a leading U+FEFF is part of the plaintext, not an encoding mark to drop.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** A value of the form v<N>:<nonce>:<ciphertext>, checked and decoded (see AesGcmV1Codec.parse). */
export interface ParsedValue {
  version: string;
  nonce: Buffer;
  sealed: Buffer;
}

function parse(value: string): ParsedValue {
  if (typeof value !== 'string') {
    throw new CiphertextError('malformed', `expected a string, found ${typeof value}`);
  }
  const first = value.indexOf(':');
  const second = first < 0 ? -1 : value.indexOf(':', first + 1);
  if (first < 0 || second < 0 || value.indexOf(':', second + 1) >= 0) {
    throw new CiphertextError('malformed', 'not of the form v<N>:<nonce>:<ciphertext>');
  }
  const version = value.slice(0, first);
  if (!VERSION_RE.test(version)) {
    throw new CiphertextError('malformed', 'the version prefix is not v<N>');
  }
  const nonceText = value.slice(first + 1, second);
  const sealedText = value.slice(second + 1);
  if (!NONCE_RE.test(nonceText)) {
    throw new CiphertextError('malformed', 'the nonce is not base64 of 12 bytes', version);
  }
  if (!isBase64(sealedText)) {
    throw new CiphertextError('malformed', 'the ciphertext is not valid base64', version);
  }
  const sealed = Buffer.from(sealedText, 'base64');
  if (sealed.length < TAG_BYTES) {
    throw new CiphertextError('truncated', `the ciphertext is ${sealed.length} bytes, shorter than the 16-byte tag`, version);
  }
  return { version, nonce: Buffer.from(nonceText, 'base64'), sealed };
}

/** The default codec: AES-256-GCM, UTF-8 plaintext, no associated data. */
export class AesGcmV1Codec implements Codec {
  readonly name = 'aes-256-gcm-v1';
  readonly shapePattern = AES_GCM_V1_SHAPE;
  private readonly nonces: NonceSource;

  constructor(nonces: NonceSource = new NonceSource()) {
    this.nonces = nonces;
  }

  versionOf(value: string): string {
    return parse(value).version;
  }

  /**
   * The value checked and decoded, for decryptParsed: a caller that needs the version before it
   * decrypts (to choose how) checks and decodes the value once instead of twice. Throws
   * CiphertextError as decrypt does.
   */
  parse(value: string): ParsedValue {
    return parse(value);
  }

  encrypt(plaintext: string, version: string, key: Buffer): string {
    return this.encryptWithNonce(plaintext, version, key, this.nonces.next());
  }

  /** Deterministic encryption for test vectors only: never reuse a nonce with the same key. */
  encryptWithNonce(plaintext: string, version: string, key: Buffer, nonce: Buffer): string {
    if (!VERSION_RE.test(version)) throw new RangeError(`invalid key version name "${version}"`);
    if (key.length !== KEY_BYTES) throw new RangeError(`AES-256 needs a 32-byte key, got ${key.length}`);
    if (nonce.length !== NONCE_BYTES) throw new RangeError(`the nonce must be 12 bytes, got ${nonce.length}`);
    const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
    const body = cipher.update(plaintext, 'utf8');
    const tail = cipher.final();
    const tag = cipher.getAuthTag();
    const sealed = tail.length === 0 ? Buffer.concat([body, tag]) : Buffer.concat([body, tail, tag]);
    return `${version}:${nonce.toString('base64')}:${sealed.toString('base64')}`;
  }

  decrypt(value: string, keyFor: KeyLookup): string {
    return this.decryptParsed(parse(value), keyFor);
  }

  /** decrypt, for what parse() returned (only that: it checks nothing parse() checked). */
  decryptParsed({ version, nonce, sealed }: ParsedValue, keyFor: KeyLookup): string {
    const key = keyFor(version);
    if (key === undefined) {
      throw new CiphertextError('unknown-version', `no key for version ${version} in the keyring`, version);
    }
    const tagStart = sealed.length - TAG_BYTES;
    let plain: Buffer;
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
      decipher.setAuthTag(sealed.subarray(tagStart));
      const body = decipher.update(sealed.subarray(0, tagStart));
      const tail = decipher.final();
      plain = tail.length === 0 ? body : Buffer.concat([body, tail]);
    } catch {
      throw new CiphertextError(
        'authentication-failed',
        `the value does not authenticate under key ${version} (tampered, or written with another key)`,
        version,
      );
    }
    try {
      return utf8.decode(plain);
    } catch {
      throw new CiphertextError('invalid-utf8', 'the decrypted value is not valid UTF-8', version);
    }
  }
}

/** True when the value has the shape of the default format (the same test SQL counts use). */
export function isWellFormed(value: string): boolean {
  try {
    parse(value);
    return true;
  } catch {
    return false;
  }
}
