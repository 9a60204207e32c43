/**
 * Fernet tokens (https://github.com/fernet/spec/blob/master/Spec.md), byte-compatible with Python's
 * `cryptography.fernet`, so keyctl can rotate fields applications wrote with Fernet / MultiFernet.
 * docs/format.md ("Fernet tokens") specifies the format and lists the test vectors.
 *
 *     base64url(0x80 ‖ timestamp (u64 BE seconds) ‖ IV (16) ‖ AES-128-CBC/PKCS7 ciphertext ‖ HMAC-SHA256 (32))
 *
 * The 32-byte key is signing key (first 16 bytes) ‖ encryption key (last 16). A keyring version's
 * 32-byte key is used as the Fernet key as it is: its base64url form is what the application passes
 * to `Fernet(...)`. A token does not name its key, so finding the version costs one HMAC per key
 * tried, in keyring order, as MultiFernet does.
 *
 * Every failure is a CiphertextError; the HMAC is checked (in constant time) before anything is
 * decrypted, so decrypt never returns wrong plaintext. keyctl is stricter than Python about the
 * encoding: only canonical, padded base64url (what Fernet writes) is well-formed.
 */
import { createCipheriv, createDecipheriv, createHmac, timingSafeEqual } from 'node:crypto';
import { CiphertextError } from './codec.js';
import { NonceSource } from './nonce.js';

const VERSION_BYTE = 0x80;
const KEY_BYTES = 32;
const HALF_KEY = 16;
const IV_BYTES = 16;
const BLOCK = 16;
const HMAC_BYTES = 32;
/** Version, timestamp and IV: the part in front of the ciphertext. */
const HEADER_BYTES = 1 + 8 + IV_BYTES;
/** Python's cryptography accepts tokens up to 60 s in the future when a TTL is given. */
export const FERNET_MAX_CLOCK_SKEW_SECONDS = 60;

const BASE64URL_RE = /^[A-Za-z0-9_-]*={0,2}$/;
const KEYRING_VERSION_RE = /^v[0-9]+$/;
// ignoreBOM: a leading U+FEFF is plaintext, not a byte-order mark to strip.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export interface FernetEncryptOptions {
  /** The token's timestamp; defaults to the current time. Whole seconds are kept. */
  now?: Date;
  /** A fixed IV, for test vectors only: never reuse an IV with the same key. */
  iv?: Buffer;
}

export interface FernetDecryptOptions {
  /**
   * Reject tokens older than this many seconds (and more than 60 s in the future), as Python's
   * `Fernet.decrypt(token, ttl)` does. Rotation must never pass one: an old value is still a value.
   */
  ttlSeconds?: number;
  /** The clock for the TTL check; defaults to the current time. */
  now?: Date;
}

/** A TTL check failed on an authentic token (reason 'authentication-failed', as Python's InvalidToken). */
export class FernetTtlError extends CiphertextError {
  readonly problem: 'expired' | 'from-the-future';
  constructor(problem: 'expired' | 'from-the-future', message: string, version?: string) {
    super('authentication-failed', message, version);
    this.name = 'FernetTtlError';
    this.problem = problem;
  }
}

function checkKey(key: Buffer): void {
  if (!Buffer.isBuffer(key) || key.length !== KEY_BYTES) {
    throw new RangeError(`a Fernet key is 32 bytes, got ${Buffer.isBuffer(key) ? key.length : typeof key}`);
  }
}

/** The base64url form of a 32-byte key: what `Fernet(key)` takes in Python. */
export function fernetKeyToString(key: Buffer): string {
  checkKey(key);
  return toBase64url(key);
}

/** Reads a Fernet key (44 base64url characters, as `Fernet.generate_key()` prints). */
export function fernetKeyFromString(text: string): Buffer {
  const key = Buffer.from(text, 'base64url');
  if (key.length !== KEY_BYTES || fernetKeyToString(key) !== text) {
    throw new RangeError('a Fernet key is 32 bytes in padded base64url (44 characters)');
  }
  return key;
}

/** Canonical padded base64url, as Python's `urlsafe_b64encode` writes it. */
function toBase64url(data: Buffer): string {
  const text = data.toString('base64url');
  return text + '='.repeat((4 - (text.length % 4)) % 4);
}

const ivs = new NonceSource(IV_BYTES);

/** Encrypts UTF-8 text to a Fernet token (no prefix). */
export function encrypt(plaintext: string, key: Buffer, opts: FernetEncryptOptions = {}): string {
  checkKey(key);
  const iv = opts.iv ?? ivs.next();
  if (iv.length !== IV_BYTES) throw new RangeError(`a Fernet IV is 16 bytes, got ${iv.length}`);
  const millis = (opts.now ?? new Date()).getTime();
  if (!Number.isFinite(millis) || millis < 0) throw new RangeError('the token time must be a valid date after 1970');
  const header = Buffer.alloc(HEADER_BYTES);
  header[0] = VERSION_BYTE;
  header.writeBigUInt64BE(BigInt(Math.floor(millis / 1000)), 1);
  iv.copy(header, 9);
  const cipher = createCipheriv('aes-128-cbc', key.subarray(HALF_KEY), iv);
  const body = Buffer.concat([header, cipher.update(plaintext, 'utf8'), cipher.final()]);
  const mac = createHmac('sha256', key.subarray(0, HALF_KEY)).update(body).digest();
  return toBase64url(Buffer.concat([body, mac]));
}

/** The decoded bytes of a well-formed token; nothing here is authenticated yet. */
interface ParsedToken {
  data: Buffer;
  timestamp: bigint;
}

function parseToken(token: string): ParsedToken {
  if (typeof token !== 'string') throw new CiphertextError('malformed', `expected a string, found ${typeof token}`);
  if (token.length % 4 !== 0 || !BASE64URL_RE.test(token)) {
    throw new CiphertextError('malformed', 'the token is not padded base64url');
  }
  const data = Buffer.from(token, 'base64url');
  // Rejects non-canonical encodings (stray bits in the last character) that decode to the same bytes.
  if (toBase64url(data) !== token) throw new CiphertextError('malformed', 'the token is not canonical base64url');
  const cipherBytes = data.length - HEADER_BYTES - HMAC_BYTES;
  if (cipherBytes < BLOCK || cipherBytes % BLOCK !== 0) {
    throw new CiphertextError('malformed', `a Fernet token is 57 + 16·n bytes (n ≥ 1), this one is ${data.length}`);
  }
  if (data[0] !== VERSION_BYTE) {
    throw new CiphertextError('malformed', `the version byte is 0x${data[0]!.toString(16).padStart(2, '0')}, not 0x80`);
  }
  return { data, timestamp: data.readBigUInt64BE(1) };
}

/** True when the HMAC verifies under this key (constant-time comparison). */
function authenticates(data: Buffer, key: Buffer): boolean {
  const macStart = data.length - HMAC_BYTES;
  const expected = createHmac('sha256', key.subarray(0, HALF_KEY)).update(data.subarray(0, macStart)).digest();
  return timingSafeEqual(expected, data.subarray(macStart));
}

function checkTtl(timestamp: bigint, opts: FernetDecryptOptions, version?: string): void {
  if (opts.ttlSeconds === undefined) return;
  if (!Number.isInteger(opts.ttlSeconds) || opts.ttlSeconds < 0) throw new RangeError('ttlSeconds must be a whole number ≥ 0');
  const now = BigInt(Math.floor((opts.now ?? new Date()).getTime() / 1000));
  if (timestamp + BigInt(opts.ttlSeconds) < now) {
    throw new FernetTtlError('expired', `the token is older than its ${opts.ttlSeconds}-second TTL`, version);
  }
  if (now + BigInt(FERNET_MAX_CLOCK_SKEW_SECONDS) < timestamp) {
    throw new FernetTtlError('from-the-future', 'the token is dated more than 60 s in the future', version);
  }
}

/** Decrypts an authenticated token. */
function open(data: Buffer, key: Buffer, version?: string): string {
  let plain: Buffer;
  try {
    const decipher = createDecipheriv('aes-128-cbc', key.subarray(HALF_KEY), data.subarray(9, HEADER_BYTES));
    plain = Buffer.concat([decipher.update(data.subarray(HEADER_BYTES, data.length - HMAC_BYTES)), decipher.final()]);
  } catch {
    // Authentic, so the key is right: the writer did not pad as the spec says.
    throw new CiphertextError('malformed', 'the token authenticates but its PKCS7 padding is invalid', version);
  }
  try {
    return utf8.decode(plain);
  } catch {
    throw new CiphertextError('invalid-utf8', 'the decrypted value is not valid UTF-8', version);
  }
}

/** Decrypts a Fernet token (no prefix) to UTF-8 text. */
export function decrypt(token: string, key: Buffer, opts: FernetDecryptOptions = {}): string {
  checkKey(key);
  const { data, timestamp } = parseToken(token);
  if (!authenticates(data, key)) {
    throw new CiphertextError('authentication-failed', 'the token does not authenticate (tampered, or written with another key)');
  }
  checkTtl(timestamp, opts);
  return open(data, key);
}

export interface FernetDecryptResult {
  plaintext: string;
  /** The keyring version whose key authenticated the token. */
  version: string;
  /** How many keys were tried, this one included: the cost of finding the key (one HMAC each). */
  tried: number;
  /** The token's timestamp in seconds since 1970, so a re-encryption can keep it (as MultiFernet.rotate does). */
  timestamp: number;
}

export interface FernetCodecOptions {
  /** Text in front of every token, e.g. `FERNET_V1:`; a value without it is malformed. Default none. */
  prefix?: string;
}

const REGEX_META = /[.*+?^${}()|[\]\\]/g;
const B64U = '[A-Za-z0-9_-]';

/**
 * Fernet tokens as keyctl stores and reads them: an optional fixed prefix, keys from keyctl's keyring.
 * The keyring version is not in the token; decryptWithAny finds it by trying keys in order.
 */
export class FernetCodec {
  readonly name = 'fernet';
  readonly prefix: string;
  /**
   * Matches exactly the well-formed values (prefix, then canonical padded base64url of 57 + 16·n bytes,
   * n ≥ 1, starting with 0x80), in the regular-expression dialects Codec.shapePattern names.
   * Token lengths repeat every 3 blocks (64 characters): 100, 120 or 140 characters plus a multiple of 64.
   */
  readonly shapePattern: string;

  constructor(opts: FernetCodecOptions = {}) {
    this.prefix = opts.prefix ?? '';
    const prefix = this.prefix.replace(REGEX_META, '\\$&');
    // 0x80 encodes as `g`, then a character whose two high bits (0x80's low bits) are zero: [A-P].
    this.shapePattern = `^${prefix}g[A-P](${B64U}{64})*(${B64U}{95}[AQgw]==|${B64U}{116}[AEIMQUYcgkosw048]=|${B64U}{138})$`;
  }

  private strip(value: string): string {
    if (typeof value !== 'string') throw new CiphertextError('malformed', `expected a string, found ${typeof value}`);
    if (!value.startsWith(this.prefix)) {
      throw new CiphertextError('malformed', `the value does not start with the prefix "${this.prefix}"`);
    }
    return value.slice(this.prefix.length);
  }

  /** True when the value has the shape of a token (the same test shapePattern makes in SQL). */
  isWellFormed(value: string): boolean {
    try {
      parseToken(this.strip(value));
      return true;
    } catch {
      return false;
    }
  }

  /** Encrypts with a keyring version's 32-byte key; the version is checked but not stored in the token. */
  encrypt(plaintext: string, version: string, key: Buffer, opts: FernetEncryptOptions = {}): string {
    if (!KEYRING_VERSION_RE.test(version)) throw new RangeError(`invalid key version name "${version}"`);
    return this.prefix + encrypt(plaintext, key, opts);
  }

  /** Decrypts with one known key. */
  decrypt(value: string, key: Buffer, opts: FernetDecryptOptions = {}): string {
    return decrypt(this.strip(value), key, opts);
  }

  /** True when the value is a well-formed token that authenticates under this key: one HMAC, no decryption. */
  authenticatesUnder(value: string, key: Buffer): boolean {
    checkKey(key);
    let data: Buffer;
    try {
      data = parseToken(this.strip(value)).data;
    } catch {
      return false;
    }
    return authenticates(data, key);
  }

  /**
   * The version whose key authenticates the token, trying keys in the order given (HMAC only, no
   * decryption): what counting tokens per version costs. Fails as decryptWithAny does.
   */
  findVersion(value: string, keys: ReadonlyArray<readonly [string, Buffer]>): { version: string; tried: number } {
    const { data } = parseToken(this.strip(value));
    let tried = 0;
    for (const [version, key] of keys) {
      checkKey(key);
      tried++;
      if (authenticates(data, key)) return { version, tried };
    }
    throw new CiphertextError('authentication-failed', `the token authenticates under none of the ${keys.length} keys tried`);
  }

  /**
   * Tries the keys in the order given (newest first, as MultiFernet is built) and returns the first
   * that authenticates. Only the HMAC is computed per key; one key's AES decryption at most.
   * Fails with 'malformed' before trying any key, or 'authentication-failed' when none authenticates.
   */
  decryptWithAny(value: string, keys: ReadonlyArray<readonly [string, Buffer]>, opts: FernetDecryptOptions = {}): FernetDecryptResult {
    const { data, timestamp } = parseToken(this.strip(value));
    let tried = 0;
    for (const [version, key] of keys) {
      checkKey(key);
      tried++;
      if (!authenticates(data, key)) continue;
      checkTtl(timestamp, opts, version);
      return { plaintext: open(data, key, version), version, tried, timestamp: Number(timestamp) };
    }
    throw new CiphertextError('authentication-failed', `the token authenticates under none of the ${keys.length} keys tried`);
  }
}
