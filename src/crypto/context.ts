/**
 * Row context for field ciphertext: associated data that binds a value to its row and column, and
 * per-row keys derived from a keyring version's key. Both start from a template over the row
 * (`"{table}.{column}:{id}"`, `"{tenant_id}/{id}"`) whose rendered bytes another implementation
 * must reproduce exactly, so the byte layout is specified in docs/format.md ("Associated data and
 * derived keys") and checked against vectors Python made (test/vectors/context.json).
 *
 * The values keep the default layout `v<N>:<nonce>:<ciphertext ‖ tag>`, so the SQL shape pattern,
 * version detection and claimsCiphertext are unchanged: a value does not say whether it is bound.
 * Targets select them with `aad` and `derive` in keyctl.yaml; src/crypto/field.ts applies them.
 *
 * Errors never carry key material, plaintext or a row's column values: only column names, types
 * and template positions (templates come from configuration and are not secret).
 */
import { createCipheriv, createDecipheriv, hkdfSync } from 'node:crypto';
import { CiphertextError, type KeyLookup } from './codec.js';
import { isBase64 } from './base64.js';
import { NonceSource } from './nonce.js';

/** The placeholders that name the target instead of a row column. */
export const TABLE_PLACEHOLDER = 'table';
export const COLUMN_PLACEHOLDER = 'column';

/** The table and encrypted column a value belongs to, as `{table}` and `{column}` render them. */
export interface ContextNames {
  table: string;
  column: string;
}

/** A row as a driver returns it: column name → value. */
export type ContextRow = Readonly<Record<string, unknown>>;

export type TemplatePart = { kind: 'text'; text: string } | { kind: 'name'; name: string };

export type TemplateIssueCode =
  /** The template is the empty string. */
  | 'empty-template'
  /** A `{` with no `}` after it (or another `{` before its `}`). */
  | 'unclosed-brace'
  /** A `}` that closes nothing and is not doubled. */
  | 'unmatched-brace'
  /** `{}`. */
  | 'empty-name'
  /** `{ id }`, `{1st}`, `{a.b}`, `{id:05d}`: only identifiers are names. */
  | 'not-an-identifier'
  /** Warning: no placeholder at all, so every row renders the same bytes. */
  | 'binds-nothing'
  /** Warning: only `{table}` / `{column}`, so a value can move between rows of the same column. */
  | 'no-row-column'
  /** Warning: `{a}{b}`, two values with nothing between them (1 and 23 render as 12 and 3 do). */
  | 'adjacent-values';

export interface TemplateIssue {
  code: TemplateIssueCode;
  /** 1-based character position in the template, when the issue is at one place. */
  position?: number;
  message: string;
}

/** A template that does not parse; `issues` lists every problem found, not only the first. */
export class ContextTemplateError extends Error {
  readonly issues: readonly TemplateIssue[];
  constructor(template: string, issues: readonly TemplateIssue[]) {
    super(`invalid context template ${JSON.stringify(template)}: ${issues.map((i) => i.message).join('; ')}`);
    this.name = 'ContextTemplateError';
    this.issues = issues;
  }
}

export type ContextValueProblem =
  /** The row has no such column (a wiring error: the column was not selected). */
  | 'missing'
  /** The column is NULL in this row: a NULL context cannot bind a value to its row. */
  | 'null'
  /** A type without an exact, portable rendering (boolean, fraction, unsafe number, Date, lone surrogate…). */
  | 'unsupported'
  /** The whole template renders to zero bytes for this row: empty associated data binds nothing. */
  | 'empty'
  /** More than 1024 bytes of HKDF info (node:crypto's limit). */
  | 'too-long';

/** A row whose context cannot be rendered. The message names the column and type, never the value. */
export class ContextValueError extends Error {
  readonly problem: ContextValueProblem;
  /** The row column at fault, when there is one. */
  readonly column: string | undefined;
  constructor(problem: ContextValueProblem, message: string, column?: string) {
    super(message);
    this.name = 'ContextValueError';
    this.problem = problem;
    this.column = column;
  }
}

const IDENTIFIER_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
// With the u flag a surrogate pair is one code point, so only lone surrogates match.
const LONE_SURROGATE_RE = /\p{Cs}/u;

interface Parsed {
  parts: TemplatePart[];
  errors: TemplateIssue[];
}

function parse(template: string): Parsed {
  const parts: TemplatePart[] = [];
  const errors: TemplateIssue[] = [];
  let text = '';
  const flush = (): void => {
    if (text !== '') parts.push({ kind: 'text', text });
    text = '';
  };
  if (template === '') errors.push({ code: 'empty-template', message: 'the template is empty, so it binds nothing' });
  let i = 0;
  while (i < template.length) {
    const c = template[i]!;
    if (c === '{') {
      if (template[i + 1] === '{') {
        text += '{';
        i += 2;
        continue;
      }
      const close = template.indexOf('}', i + 1);
      const reopen = template.indexOf('{', i + 1);
      if (close < 0 || (reopen >= 0 && reopen < close)) {
        errors.push({
          code: 'unclosed-brace',
          position: i + 1,
          message: `unclosed "{" at character ${i + 1} (write "{{" for a literal "{")`,
        });
        if (close < 0) break;
        i = reopen;
        continue;
      }
      const name = template.slice(i + 1, close);
      if (name === '') {
        errors.push({ code: 'empty-name', position: i + 1, message: `empty name "{}" at character ${i + 1}` });
      } else if (!IDENTIFIER_RE.test(name)) {
        errors.push({
          code: 'not-an-identifier',
          position: i + 1,
          message: `${JSON.stringify(`{${name}}`)} at character ${i + 1}: a name is a column identifier (letters, digits and _, not starting with a digit)`,
        });
      } else {
        flush();
        parts.push({ kind: 'name', name });
      }
      i = close + 1;
    } else if (c === '}') {
      if (template[i + 1] === '}') {
        text += '}';
        i += 2;
        continue;
      }
      errors.push({
        code: 'unmatched-brace',
        position: i + 1,
        message: `unmatched "}" at character ${i + 1} (write "}}" for a literal "}")`,
      });
      i++;
    } else {
      text += c;
      i++;
    }
  }
  flush();
  return { parts, errors };
}

/**
 * Checks a template and says everything wrong with it (errors) and what makes it bind less than it
 * seems to (warnings), as config rules do, instead of throwing on the first problem.
 */
export function checkTemplate(template: string): { errors: TemplateIssue[]; warnings: TemplateIssue[] } {
  const { parts, errors } = parse(template);
  const warnings: TemplateIssue[] = [];
  if (errors.length > 0) return { errors, warnings };
  const names = parts.flatMap((p) => (p.kind === 'name' ? [p.name] : []));
  if (names.length === 0) {
    warnings.push({ code: 'binds-nothing', message: 'the template names no placeholder: every row renders the same bytes' });
  } else if (names.every((n) => n === TABLE_PLACEHOLDER || n === COLUMN_PLACEHOLDER)) {
    warnings.push({
      code: 'no-row-column',
      message: 'the template names no row column: a value copied to another row of the same column still decrypts',
    });
  }
  for (let k = 1; k < parts.length; k++) {
    const [a, b] = [parts[k - 1]!, parts[k]!];
    if (a.kind === 'name' && b.kind === 'name') {
      warnings.push({
        code: 'adjacent-values',
        message: `"{${a.name}}{${b.name}}": two values with nothing between them are ambiguous (1 and 23 render as 12 and 3 do); put a separator between them`,
      });
    }
  }
  return { errors, warnings };
}

/** The parts of a valid template; throws ContextTemplateError listing every problem. */
export function parseTemplate(template: string): TemplatePart[] {
  if (typeof template !== 'string') throw new TypeError(`a context template is a string, got ${typeof template}`);
  const { parts, errors } = parse(template);
  if (errors.length > 0) throw new ContextTemplateError(template, errors);
  return parts;
}

/** The row columns a template reads (without `{table}` and `{column}`), in order of first use, each once. */
export function templateColumns(template: string): string[] {
  const out: string[] = [];
  for (const p of parseTemplate(template)) {
    if (p.kind === 'name' && p.name !== TABLE_PLACEHOLDER && p.name !== COLUMN_PLACEHOLDER && !out.includes(p.name)) out.push(p.name);
  }
  return out;
}

function typeName(value: unknown): string {
  if (value instanceof Date) return 'a date';
  if (Array.isArray(value)) return 'an array';
  const t = typeof value;
  return `${/^[aeiou]/.test(t) ? 'an' : 'a'} ${t}`;
}

/**
 * One row value's bytes (docs/format.md, "Associated data and derived keys"): text as UTF-8,
 * integers (safe numbers and bigints) as decimal ASCII, binary as its bytes. Everything else is
 * refused rather than given a rendering another language might not reproduce.
 */
function renderValue(value: unknown, column: string): Buffer {
  if (value === undefined) {
    throw new ContextValueError('missing', `the row has no column "${column}" (select it with the row)`, column);
  }
  if (value === null) {
    throw new ContextValueError('null', `column "${column}" is NULL in this row: a NULL context cannot bind a value to its row`, column);
  }
  if (typeof value === 'string') {
    if (LONE_SURROGATE_RE.test(value)) {
      throw new ContextValueError('unsupported', `column "${column}" holds text with a lone UTF-16 surrogate, which has no UTF-8 form`, column);
    }
    return Buffer.from(value, 'utf8');
  }
  if (typeof value === 'bigint') return Buffer.from(value.toString(10), 'ascii');
  if (typeof value === 'number') {
    if (Number.isSafeInteger(value)) return Buffer.from(String(value), 'ascii');
    const why = Number.isInteger(value)
      ? 'an integer beyond ±(2^53 − 1) read as a JavaScript number, which may have lost digits (read the column as a bigint)'
      : 'a number that is not an integer (fractions have no portable decimal form)';
    throw new ContextValueError('unsupported', `column "${column}" holds ${why}`, column);
  }
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  throw new ContextValueError(
    'unsupported',
    `column "${column}" holds ${typeName(value)}; a context value is text, an integer or binary (cast the column in the query)`,
    column,
  );
}

/**
 * The bytes of a template for one row: literal text as UTF-8 (`{{` and `}}` as one brace),
 * `{table}` and `{column}` as the target's names, any other `{name}` as that column's value.
 * Refuses a NULL or missing column, a value without a portable rendering, and an empty result.
 */
export function renderTemplate(template: string, row: ContextRow, names: ContextNames): Buffer {
  const parts = parseTemplate(template);
  for (const [what, name] of [
    ['table', names.table],
    ['column', names.column],
  ] as const) {
    if (typeof name !== 'string' || name === '') throw new RangeError(`the ${what} name must be a non-empty string`);
  }
  const chunks: Buffer[] = [];
  for (const p of parts) {
    if (p.kind === 'text') chunks.push(Buffer.from(p.text, 'utf8'));
    else if (p.name === TABLE_PLACEHOLDER) chunks.push(Buffer.from(names.table, 'utf8'));
    else if (p.name === COLUMN_PLACEHOLDER) chunks.push(Buffer.from(names.column, 'utf8'));
    else chunks.push(renderValue(row[p.name], p.name));
  }
  const out = Buffer.concat(chunks);
  if (out.length === 0) {
    throw new ContextValueError('empty', 'the context renders to no bytes for this row (every value it names is empty), so it would bind nothing');
  }
  return out;
}

const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
/** node:crypto's hkdfSync refuses longer info. */
export const MAX_INFO_BYTES = 1024;
/**
 * Empty salt: HKDF then extracts with a 32-byte zero key (RFC 5869 §2.2), exactly what Python's
 * `HKDF(..., salt=None, ...)` does, so keys applications already derive per profile that way are
 * readable. Field keys own the empty salt: any other keyctl derivation from a version key (blind
 * indexes, …) must use a non-empty salt label, so no row's info can ever collide with it.
 */
const FIELD_KEY_SALT = Buffer.alloc(0);

/** The key for one row: HKDF-SHA256(ikm = versionKey, salt = empty, info = rendered template), 32 bytes. */
export function deriveKey(versionKey: Buffer, info: Buffer): Buffer {
  if (!Buffer.isBuffer(versionKey) || versionKey.length !== KEY_BYTES) {
    throw new RangeError(`a version key is 32 bytes, got ${Buffer.isBuffer(versionKey) ? versionKey.length : typeof versionKey}`);
  }
  if (!Buffer.isBuffer(info)) throw new TypeError('the HKDF info must be a Buffer');
  if (info.length > MAX_INFO_BYTES) {
    throw new ContextValueError('too-long', `the derivation context is ${info.length} bytes; HKDF info is limited to ${MAX_INFO_BYTES}`);
  }
  return Buffer.from(hkdfSync('sha256', versionKey, FIELD_KEY_SALT, info, KEY_BYTES));
}

/** A key lookup that derives each version's key for one row; unknown versions stay unknown. */
export function derivedKeys(keyFor: KeyLookup, info: Buffer): KeyLookup {
  return (version) => {
    const key = keyFor(version);
    return key === undefined ? undefined : deriveKey(key, info);
  };
}

// --- Copied from codec.ts, which does not export its parser (kept identical so both read the same values; isBase64 is shared).
const NONCE_RE = /^[A-Za-z0-9+/]{16}$/;
const VERSION_RE = /^v[0-9]+$/;

interface ParsedValue {
  version: string;
  nonce: Buffer;
  sealed: Buffer;
}

function parseValue(value: string): ParsedValue {
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
// --- End of the copy.

// ignoreBOM: a leading U+FEFF is part of the plaintext, not an encoding mark to drop.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const nonces = new NonceSource();

export interface BoundEncryptOptions {
  /** A fixed nonce, for test vectors only: never reuse a nonce with the same key. */
  nonce?: Buffer;
}

/**
 * AES-256-GCM with associated data, in the default string layout. The AAD is authenticated, not
 * stored: the reader must supply the same bytes. Empty AAD is the same as none (plain `v<N>:…`).
 */
export function encryptBound(plaintext: string, version: string, key: Buffer, aad: Buffer, opts: BoundEncryptOptions = {}): string {
  if (!VERSION_RE.test(version)) throw new RangeError(`invalid key version name "${version}"`);
  if (!Buffer.isBuffer(key) || key.length !== KEY_BYTES)
    throw new RangeError(`AES-256 needs a 32-byte key, got ${Buffer.isBuffer(key) ? key.length : typeof key}`);
  if (!Buffer.isBuffer(aad)) throw new TypeError('the associated data must be a Buffer');
  const nonce = opts.nonce ?? nonces.next();
  if (nonce.length !== NONCE_BYTES) throw new RangeError(`the nonce must be 12 bytes, got ${nonce.length}`);
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad);
  const sealed = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final(), cipher.getAuthTag()]);
  return `${version}:${nonce.toString('base64')}:${sealed.toString('base64')}`;
}

/**
 * Decrypts a value written by encryptBound with the same associated data. Fails as the default
 * codec does; a value copied from another row (other AAD) fails with 'authentication-failed'.
 */
export function decryptBound(value: string, keyFor: KeyLookup, aad: Buffer): string {
  if (!Buffer.isBuffer(aad)) throw new TypeError('the associated data must be a Buffer');
  const { version, nonce, sealed } = parseValue(value);
  const key = keyFor(version);
  if (key === undefined) {
    throw new CiphertextError('unknown-version', `no key for version ${version} in the keyring`, version);
  }
  const tagStart = sealed.length - TAG_BYTES;
  let plain: Buffer;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
    decipher.setAAD(aad);
    decipher.setAuthTag(sealed.subarray(tagStart));
    plain = Buffer.concat([decipher.update(sealed.subarray(0, tagStart)), decipher.final()]);
  } catch {
    throw new CiphertextError(
      'authentication-failed',
      `the value does not authenticate under key ${version} with this row's context (tampered, written with another key, or copied from another row or column)`,
      version,
    );
  }
  try {
    return utf8.decode(plain);
  } catch {
    throw new CiphertextError('invalid-utf8', 'the decrypted value is not valid UTF-8', version);
  }
}

/**
 * How one column binds its values to their rows; either, both or neither may be set.
 * `derive` changes the key (key = HKDF(versionKey, info)); `aad` binds the ciphertext.
 */
export interface RowContextSpec {
  /** Template of the associated data. */
  aad?: string;
  /** Template of the HKDF info for the row's key. */
  derive?: string;
}

export interface RowContext {
  /** The associated data (empty when the spec has none). */
  aad: Buffer;
  /** The HKDF info, or undefined when keys are not derived. */
  info: Buffer | undefined;
}

/** Renders a spec's templates for one row. */
export function rowContext(spec: RowContextSpec, row: ContextRow, names: ContextNames): RowContext {
  return {
    aad: spec.aad === undefined ? Buffer.alloc(0) : renderTemplate(spec.aad, row, names),
    info: spec.derive === undefined ? undefined : renderTemplate(spec.derive, row, names),
  };
}

/** Encrypts a row's value under a version's key, with the spec's derived key and associated data. */
export function encryptForRow(
  plaintext: string,
  version: string,
  versionKey: Buffer,
  spec: RowContextSpec,
  row: ContextRow,
  names: ContextNames,
  opts: BoundEncryptOptions = {},
): string {
  const { aad, info } = rowContext(spec, row, names);
  const key = info === undefined ? versionKey : deriveKey(versionKey, info);
  return encryptBound(plaintext, version, key, aad, opts);
}

/**
 * Decrypts a row's value. The context is rendered first, so a row whose context cannot render
 * fails with ContextValueError (whatever its value holds); value failures are CiphertextErrors.
 */
export function decryptForRow(value: string, keyFor: KeyLookup, spec: RowContextSpec, row: ContextRow, names: ContextNames): string {
  const { aad, info } = rowContext(spec, row, names);
  return decryptBound(value, info === undefined ? keyFor : derivedKeys(keyFor, info), aad);
}
