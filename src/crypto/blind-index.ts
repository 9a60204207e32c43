/**
 * Blind indexes: a keyed hash of a field's plaintext, stored in a column beside the ciphertext, so
 * an application can find rows by equality (`WHERE email_bidx IN (?, ?)`) without decrypting. Each
 * keyring version has its own index key, so a rotation recomputes the index with the new key, and
 * the value names its version (`v2:<base64 of 32 bytes>`) so `status` can count it per version and
 * an application can query both versions while a rotation is under way.
 *
 * The exact computation is specified in docs/format.md ("Blind indexes") and checked against
 * vectors Python made (test/vectors/blind-index.json). Targets select them with `blindIndexes`;
 * src/reencrypt/plan.ts recomputes them and the decryption scan checks them for verify.
 *
 * Errors never carry key material or plaintext.
 */
import { createHmac, hkdfSync } from 'node:crypto';

/**
 * The HKDF salt of every index key. Field keys own the empty salt (context.ts), so no row's derived
 * field key can ever equal an index key, whatever its info.
 */
export const BLIND_INDEX_SALT = Buffer.from('keyctl blind index v1', 'utf8');
const KEY_BYTES = 32;
const VERSION_RE = /^v[1-9][0-9]*$/;

/** Normalisation steps, applied in the order listed before hashing. */
export type NormalizeStep = 'trim' | 'lowercase' | 'nfc';
export const NORMALIZE_STEPS: readonly NormalizeStep[] = ['trim', 'lowercase', 'nfc'];

/** A well-formed index value: the version, a colon, and 32 bytes of HMAC in padded base64. */
export const BLIND_INDEX_SHAPE = '^v[1-9][0-9]*:[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$';
const SHAPE_RE = new RegExp(BLIND_INDEX_SHAPE);

/** ASCII whitespace only (space, \t, \n, \v, \f, \r): Python's str.strip() and JS trim() differ beyond it. */
const ASCII_WS_EDGES = /^[ \t\n\v\f\r]+|[ \t\n\v\f\r]+$/g;

/**
 * The text that is hashed: `trim` removes ASCII whitespace at both ends, `lowercase` is Unicode's
 * default lowercase mapping (String.prototype.toLowerCase, Python's str.lower), `nfc` is Unicode
 * normalisation form C. Steps run in the order given.
 */
export function normalizeForIndex(text: string, steps: readonly NormalizeStep[]): string {
  let out = text;
  for (const step of steps) {
    if (step === 'trim') out = out.replace(ASCII_WS_EDGES, '');
    else if (step === 'lowercase') out = out.toLowerCase();
    else if (step === 'nfc') out = out.normalize('NFC');
    else throw new RangeError(`unknown normalisation step ${JSON.stringify(step)} (expected one of ${NORMALIZE_STEPS.join(', ')})`);
  }
  return out;
}

/**
 * The index key of one version for one source column:
 * HKDF-SHA256(ikm = version key, salt = "keyctl blind index v1", info = "<table>.<source>", 32 bytes).
 * A different key per column, so equal plaintexts in two columns do not give equal index values.
 */
export function blindIndexKey(versionKey: Buffer, table: string, source: string): Buffer {
  if (!Buffer.isBuffer(versionKey) || versionKey.length !== KEY_BYTES) {
    throw new RangeError(`a version key is 32 bytes, got ${Buffer.isBuffer(versionKey) ? versionKey.length : typeof versionKey}`);
  }
  if (!table || !source) throw new RangeError('the table and source column names must be non-empty');
  return Buffer.from(hkdfSync('sha256', versionKey, BLIND_INDEX_SALT, Buffer.from(`${table}.${source}`, 'utf8'), KEY_BYTES));
}

/** `v<N>:` + base64(HMAC-SHA256(index key, UTF-8 of the normalised plaintext)). */
export function blindIndexValue(plaintext: string, version: string, indexKey: Buffer, steps: readonly NormalizeStep[] = []): string {
  if (!VERSION_RE.test(version)) throw new RangeError(`"${version}" is not a key version name (expected v1, v2, …)`);
  if (/\p{Cs}/u.test(plaintext)) throw new RangeError('the plaintext holds a lone UTF-16 surrogate, which has no UTF-8 form');
  const mac = createHmac('sha256', indexKey).update(normalizeForIndex(plaintext, steps), 'utf8').digest();
  return `${version}:${mac.toString('base64')}`;
}

/** The version an index value names, or null when it is not a well-formed index value. */
export function blindIndexVersion(value: unknown): string | null {
  if (typeof value !== 'string' || !SHAPE_RE.test(value)) return null;
  return value.slice(0, value.indexOf(':'));
}

/** Computes one column's index values, deriving the index key once per version key. */
export class BlindIndexer {
  /** By the version key itself, never by its name: two keyrings may both have a v2. */
  private readonly keys = new WeakMap<Buffer, Buffer>();
  constructor(
    readonly table: string,
    readonly source: string,
    readonly normalize: readonly NormalizeStep[] = [],
  ) {
    for (const s of normalize) if (!NORMALIZE_STEPS.includes(s)) throw new RangeError(`unknown normalisation step ${JSON.stringify(s)}`);
  }

  /** The index value of `plaintext` under `version`, whose keyring key is `versionKey`. */
  value(plaintext: string, version: string, versionKey: Buffer): string {
    let key = this.keys.get(versionKey);
    if (!key) {
      key = blindIndexKey(versionKey, this.table, this.source);
      this.keys.set(versionKey, key);
    }
    return blindIndexValue(plaintext, version, key, this.normalize);
  }

  /** Whether `value` is the index of `plaintext` under `version` (constant-time compare not needed: both are derived by the caller). */
  matches(value: unknown, plaintext: string, version: string, versionKey: Buffer): boolean {
    return typeof value === 'string' && value === this.value(plaintext, version, versionKey);
  }
}
