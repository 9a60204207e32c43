/**
 * What one target's column may hold and how keyctl reads and writes it: AES-GCM values
 * (`v<N>:…`, docs/format.md), Fernet tokens where the target is Fernet (`codec: fernet`) or is
 * migrating from it (`from: { codec: fernet, versions: [v1] }`), and plaintext where it is being
 * onboarded (`plaintext: encrypt`), AES-GCM values bound to their row (`aad`, `derive`: context.ts)
 * except under the versions written before (`from: { codec: aes-gcm }`). status, reencrypt, verify,
 * the destruction scan and recover-test all classify and open values here, so they agree on every
 * shape.
 *
 * A Fernet token does not name its key: its version is found by trying keys newest first, as
 * MultiFernet does, one HMAC per key tried (`tried` says what that cost).
 */
import type { TargetConfig } from '../config/schema.js';
import { BINARY_MAGIC, binaryVersionOf, decryptBinary, encryptBinary, isBinaryWellFormed } from './binary.js';
import { AesGcmV1Codec, CiphertextError, CLAIMS_CIPHERTEXT, claimsCiphertext, isWellFormed } from './codec.js';
import { decryptForRow, encryptForRow, templateColumns, type ContextRow, type RowContextSpec } from './context.js';
import { FernetCodec } from './fernet.js';
import { compareVersions } from './keys.js';

export interface FieldSpec {
  /** Versions whose values are Fernet tokens: every version (codec: fernet), a list (from: fernet), or none. */
  fernetVersions: 'all' | readonly string[];
  /** Text in front of every Fernet token. */
  fernetPrefix: string;
  /** Values that do not claim to be ciphertext are plaintext to encrypt (plaintext: encrypt). */
  plaintext: boolean;
  /** How AES-GCM values are bound to their row (aad, derive); null when they are not. */
  context: RowContextSpec | null;
  /** AES-GCM versions written without the context (from: { codec: aes-gcm }). */
  unboundVersions: readonly string[];
  /** The target's table, as `{table}` renders it. */
  table: string;
}

export function fieldSpecOf(t: Pick<TargetConfig, 'table' | 'codec' | 'prefix' | 'from' | 'plaintext' | 'aad' | 'derive'>): FieldSpec {
  const fromFernet = t.from?.codec === 'fernet' ? t.from : undefined;
  const context: RowContextSpec | null =
    t.aad !== undefined || t.derive !== undefined ? { ...(t.aad !== undefined ? { aad: t.aad } : {}), ...(t.derive ? { derive: t.derive.info } : {}) } : null;
  return {
    fernetVersions: t.codec === 'fernet' ? 'all' : (fromFernet?.versions ?? []),
    fernetPrefix: t.codec === 'fernet' ? (t.prefix ?? '') : (fromFernet?.prefix ?? ''),
    plaintext: t.plaintext === 'encrypt',
    context,
    unboundVersions: t.from?.codec === 'aes-gcm' ? t.from.versions : [],
    table: t.table,
  };
}

/** The row columns the target's context templates read (beyond its key and encrypted columns, selected with them). */
export function contextColumnsOf(t: Pick<TargetConfig, 'aad' | 'derive'>): string[] {
  const out: string[] = [];
  for (const template of [t.aad, t.derive?.info]) if (template !== undefined) for (const c of templateColumns(template)) if (!out.includes(c)) out.push(c);
  return out;
}

/** The columns to select with the key for a target's values: its encrypted columns, then any other column its context reads. */
export function columnsToRead(t: Pick<TargetConfig, 'columns' | 'primaryKey' | 'aad' | 'derive' | 'blindIndexes'>): string[] {
  const key: readonly string[] = typeof t.primaryKey === 'string' ? [t.primaryKey] : t.primaryKey;
  const indexes = t.blindIndexes.map((b) => b.column);
  return [...t.columns, ...indexes, ...contextColumnsOf(t).filter((c) => !t.columns.includes(c) && !key.includes(c) && !indexes.includes(c))];
}

/** Where a value sits, for its row context: the row (its context columns at least) and the encrypted column. */
export interface ValueSite {
  row: ContextRow;
  column: string;
}

export type ValueKind = 'null' | 'aes-gcm' | 'fernet' | 'binary' | 'plaintext' | 'damaged';

export interface Opened {
  plaintext: string;
  version: string;
  /** Keys tried to find the version (Fernet); 0 where the value names it. */
  tried: number;
  /** A Fernet token's timestamp (seconds), kept when it is written again as Fernet. */
  timestamp?: number;
}

const REGEX_META = /[.*+?^${}()|[\]\\]/g;
/** Every Fernet token starts with 0x80 and a timestamp below 2^32: `gAAAAA` in base64url. */
const FERNET_HEAD = 'gAAAAA';
/** 9999-12-31T23:59:59Z: later token times are not kept (JavaScript dates end in 275760). */
const MAX_KEPT_TIMESTAMP = 253_402_300_799;

export class FieldCodec {
  readonly spec: FieldSpec;
  readonly aes = new AesGcmV1Codec();
  /** Set when the target holds Fernet tokens under some version. */
  readonly fernet: FernetCodec | null;

  constructor(spec: FieldSpec) {
    this.spec = spec;
    this.fernet = spec.fernetVersions === 'all' || spec.fernetVersions.length > 0 ? new FernetCodec({ prefix: spec.fernetPrefix }) : null;
  }

  /** Fernet tokens are written under this version. */
  writesFernet(version: string): boolean {
    const v = this.spec.fernetVersions;
    return v === 'all' || v.includes(version);
  }

  /**
   * Values that claim to be a Fernet token (the prefix, or without one the token's first bytes): one
   * that does not decode is damaged ciphertext, never plaintext. A pattern for SQL as for JavaScript.
   */
  get fernetClaimsPattern(): string | null {
    if (!this.fernet) return null;
    // A bare token (a row written before the prefix, say) claims to be one too.
    return this.spec.fernetPrefix ? `^(${this.spec.fernetPrefix.replace(REGEX_META, '\\$&')}|${FERNET_HEAD})` : `^${FERNET_HEAD}`;
  }

  /** Patterns for the database-side counts (see Dialect.versionBucket). */
  get sqlPatterns(): { shape: string; claims?: string; fernetShape?: string; fernetClaims?: string } {
    return {
      shape: this.aes.shapePattern,
      ...(this.spec.plaintext ? { claims: CLAIMS_CIPHERTEXT } : {}),
      ...(this.fernet ? { fernetShape: this.fernet.shapePattern, fernetClaims: this.fernetClaimsPattern! } : {}),
    };
  }

  private claimsFernet(value: string): boolean {
    if (!this.fernet) return false;
    return value.startsWith(FERNET_HEAD) || (this.spec.fernetPrefix !== '' && value.startsWith(this.spec.fernetPrefix));
  }

  /**
   * kind(value) === 'plaintext', without reading the whole value where the target onboards no
   * plaintext (then nothing is plaintext).
   */
  isPlaintext(value: unknown): boolean {
    return this.spec.plaintext && this.kind(value) === 'plaintext';
  }

  kind(value: unknown): ValueKind {
    if (value === null || value === undefined) return 'null';
    if (value instanceof Uint8Array) return this.binaryKind(value);
    if (typeof value !== 'string') return 'damaged';
    if (this.fernet?.isWellFormed(value)) return 'fernet';
    if (isWellFormed(value)) return 'aes-gcm';
    if (claimsCiphertext(value) || this.claimsFernet(value)) return 'damaged';
    return this.spec.plaintext ? 'plaintext' : 'damaged';
  }

  /**
   * A value of a binary column (bytea, BLOB, VARBINARY): keyctl's binary layout, or plaintext bytes
   * being onboarded. One that starts with the layout's byte but is not well-formed claims to be
   * ciphertext: damaged. Not with Fernet or row context (text only, for now).
   */
  private binaryKind(value: Uint8Array): ValueKind {
    if (this.fernet || this.spec.context) return 'damaged';
    if (isBinaryWellFormed(value)) return 'binary';
    if (value.length > 0 && value[0] === BINARY_MAGIC) return 'damaged';
    return this.spec.plaintext ? 'plaintext' : 'damaged';
  }

  /** Decrypts a binary value with the key of the version it names. Throws CiphertextError. */
  openBinary(value: Uint8Array, keys: ReadonlyMap<string, Buffer>): { plaintext: Buffer; version: string } {
    if (this.fernet || this.spec.context) throw new CiphertextError('malformed', 'binary values cannot be Fernet tokens or bound to their row');
    return { plaintext: decryptBinary(value, (v) => keys.get(v)), version: binaryVersionOf(value) };
  }

  /** Encrypts bytes under `version` in the binary layout. */
  sealBinary(plaintext: Uint8Array, version: string, key: Buffer): Buffer {
    return encryptBinary(plaintext, version, key);
  }

  /** A binary value already under `version`. */
  isUnderBinary(value: Uint8Array, version: string): boolean {
    return isBinaryWellFormed(value) && binaryVersionOf(value) === version;
  }

  /** How many keys a Fernet token is tried against: what a token no key authenticates costs. */
  fernetKeyCount(keys: ReadonlyMap<string, Buffer>): number {
    let n = 0;
    for (const v of keys.keys()) if (this.writesFernet(v)) n++;
    return n;
  }

  /** The keys a Fernet token may be under, newest first (MultiFernet order). */
  private fernetCandidates(keys: ReadonlyMap<string, Buffer>): Array<[string, Buffer]> {
    return [...keys].filter(([v]) => this.writesFernet(v)).sort(([a], [b]) => compareVersions(b, a));
  }

  /**
   * Decrypts a value of any shape the target holds. Throws CiphertextError; plaintext is the caller's
   * to tell apart first (kind()).
   */
  open(value: string, keys: ReadonlyMap<string, Buffer>, site?: ValueSite): Opened {
    if (this.fernet?.isWellFormed(value)) {
      const r = this.fernet.decryptWithAny(value, this.fernetCandidates(keys));
      return { plaintext: r.plaintext, version: r.version, tried: r.tried, timestamp: r.timestamp };
    }
    // Checked and decoded once: the version says whether the value is bound to its row.
    const parsed = this.aes.parse(value);
    const { version } = parsed;
    const context = this.contextFor(version);
    const plaintext = context
      ? decryptForRow(value, (v) => keys.get(v), context, this.siteRow(site), { table: this.spec.table, column: site!.column })
      : this.aes.decryptParsed(parsed, (v) => keys.get(v));
    return { plaintext, version, tried: 0 };
  }

  /** The context values under `version` are bound with, or null (unbound versions, Fernet). */
  contextFor(version: string): RowContextSpec | null {
    const c = this.spec.context;
    if (!c || this.writesFernet(version) || this.spec.unboundVersions.includes(version)) return null;
    return c;
  }

  private siteRow(site: ValueSite | undefined): ContextRow {
    if (!site) throw new Error(`values of ${this.spec.table} are bound to their row: open and seal them with the row`);
    return site.row;
  }

  /** The version a value is under, without decrypting (Fernet: HMACs, newest key first). Throws CiphertextError. */
  versionOf(value: string, keys: ReadonlyMap<string, Buffer>): { version: string; tried: number } {
    if (this.fernet?.isWellFormed(value)) return this.fernet.findVersion(value, this.fernetCandidates(keys));
    return { version: this.aes.versionOf(value), tried: 0 };
  }

  /** Encrypts under `version` in the codec that version writes; a Fernet token keeps `timestamp` when given. */
  seal(plaintext: string, version: string, key: Buffer, timestamp?: number, site?: ValueSite): string {
    if (this.writesFernet(version)) {
      // A token's time is kept unless no date can hold it (the format allows up to 2^64 seconds).
      const keep = timestamp !== undefined && timestamp <= MAX_KEPT_TIMESTAMP;
      return this.fernet!.encrypt(plaintext, version, key, keep ? { now: new Date(timestamp * 1000) } : {});
    }
    const context = this.contextFor(version);
    if (context) return encryptForRow(plaintext, version, key, context, this.siteRow(site), { table: this.spec.table, column: site!.column });
    return this.aes.encrypt(plaintext, version, key);
  }

  /**
   * Already under `version` in the codec that version writes, so nothing is to be done: the
   * `v<N>:` prefix for AES-GCM (where plaintext is allowed, `v2: call back` is plaintext, not v2);
   * for Fernet, one HMAC under that version's key.
   */
  isUnder(value: string, version: string, key: Buffer): boolean {
    if (this.writesFernet(version)) return this.fernet!.authenticatesUnder(value, key);
    return value.startsWith(`${version}:`) && (!this.spec.plaintext || claimsCiphertext(value));
  }
}
