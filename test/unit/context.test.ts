import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { AES_GCM_V1_SHAPE, AesGcmV1Codec, CiphertextError, isWellFormed, type KeyLookup } from '../../src/crypto/codec.js';
import {
  ContextTemplateError,
  ContextValueError,
  checkTemplate,
  decryptBound,
  decryptForRow,
  deriveKey,
  derivedKeys,
  encryptBound,
  encryptForRow,
  MAX_INFO_BYTES,
  type RowContextSpec,
  renderTemplate,
  rowContext,
  templateColumns,
} from '../../src/crypto/context.js';

/** A row value as context.json types it (JSON has no bigint or bytes). */
type Typed = { int: number } | { bigint: string } | { text: string } | { bytes_hex: string } | { null: true } | { float: number } | { bool: boolean };
type TypedRow = Record<string, Typed>;

interface Positive {
  name: string;
  mode: 'aad' | 'derive' | 'both';
  aad: string | null;
  derive: string | null;
  table: string;
  column: string;
  row: TypedRow;
  key_hex: string;
  version: string;
  nonce_hex: string;
  plaintext: string;
  aad_hex?: string;
  info_hex?: string;
  derived_key_hex?: string;
  value: string;
}

interface Negative {
  name: string;
  aad: string | null;
  derive: string | null;
  table: string;
  column: string;
  row: TypedRow;
  keys: Record<string, string>;
  value: string;
  reason: string;
}

interface Vectors {
  positive: Positive[];
  negative: Negative[];
  template_errors: { template: string; code: string }[];
  render_errors: { template: string; row: TypedRow; problem: string }[];
}

const vectorsDir = new URL('../vectors/', import.meta.url);
const vectors = JSON.parse(readFileSync(new URL('context.json', vectorsDir), 'utf8')) as Vectors;
const formatDoc = readFileSync(new URL('../../docs/format.md', import.meta.url), 'utf8');
const hex = (h: string): Buffer => Buffer.from(h, 'hex');

function fromTyped(t: Typed): unknown {
  if ('int' in t) return t.int;
  if ('bigint' in t) return BigInt(t.bigint);
  if ('text' in t) return t.text;
  if ('bytes_hex' in t) return hex(t.bytes_hex);
  if ('float' in t) return t.float;
  if ('bool' in t) return t.bool;
  return null;
}
const rowOf = (typed: TypedRow): Record<string, unknown> => Object.fromEntries(Object.entries(typed).map(([k, v]) => [k, fromTyped(v)]));
const specOf = (v: { aad: string | null; derive: string | null }): RowContextSpec => ({
  ...(v.aad === null ? {} : { aad: v.aad }),
  ...(v.derive === null ? {} : { derive: v.derive }),
});
const lookup =
  (keys: Record<string, Buffer>): KeyLookup =>
  (version) =>
    keys[version];

function failure<E extends Error>(cls: new (...args: never[]) => E, fn: () => unknown): E {
  let out: unknown;
  try {
    out = fn();
  } catch (err) {
    expect(err).toBeInstanceOf(cls);
    return err as E;
  }
  throw new Error(`expected a ${cls.name}, got ${JSON.stringify(out)}`);
}

describe('row-context vectors (made with Python cryptography)', () => {
  it('cover AAD, derive and both, with unicode, bigint, bytes, escapes and empty plaintext', () => {
    const modes = new Set(vectors.positive.map((v) => v.mode));
    expect(modes).toEqual(new Set(['aad', 'derive', 'both']));
    expect(vectors.positive.some((v) => v.mode === 'aad' && v.plaintext === '')).toBe(true);
    expect(vectors.positive.some((v) => v.mode === 'derive' && v.plaintext === '')).toBe(true);
    const rows = vectors.positive.map((v) => JSON.stringify(v.row));
    expect(rows.some((r) => r.includes('"bigint"'))).toBe(true);
    expect(rows.some((r) => r.includes('"bytes_hex"'))).toBe(true);
    expect(vectors.positive.some((v) => (v.aad ?? '').includes('{{') && (v.aad ?? '').includes('}}'))).toBe(true);
    expect(vectors.positive.some((v) => Buffer.byteLength(JSON.stringify(v.row)) > JSON.stringify(v.row).length)).toBe(true);
    expect(new Set(vectors.negative.map((v) => v.reason))).toEqual(new Set(['authentication-failed', 'unknown-version']));
  });

  for (const v of vectors.positive) {
    it(`${v.name}: renders the same bytes, derives the same key, decrypts, and re-encrypts byte-identically`, () => {
      const row = rowOf(v.row);
      const names = { table: v.table, column: v.column };
      const key = hex(v.key_hex);
      const spec = specOf(v);
      const ctx = rowContext(spec, row, names);
      expect(ctx.aad.toString('hex')).toBe(v.aad_hex ?? '');
      expect(ctx.info?.toString('hex')).toBe(v.info_hex);
      if (v.aad !== null) expect(renderTemplate(v.aad, row, names).toString('hex')).toBe(v.aad_hex);
      const dataKey = ctx.info === undefined ? key : deriveKey(key, ctx.info);
      if (v.derived_key_hex !== undefined) expect(dataKey.toString('hex')).toBe(v.derived_key_hex);
      expect(encryptBound(v.plaintext, v.version, dataKey, ctx.aad, { nonce: hex(v.nonce_hex) })).toBe(v.value);
      expect(decryptBound(v.value, lookup({ [v.version]: dataKey }), ctx.aad)).toBe(v.plaintext);
      expect(encryptForRow(v.plaintext, v.version, key, spec, row, names, { nonce: hex(v.nonce_hex) })).toBe(v.value);
      expect(decryptForRow(v.value, lookup({ [v.version]: key }), spec, row, names)).toBe(v.plaintext);
      // The layout is the default one: shape, version detection and the SQL pattern are unchanged.
      expect(isWellFormed(v.value)).toBe(true);
      expect(new RegExp(AES_GCM_V1_SHAPE).test(v.value)).toBe(true);
      expect(new AesGcmV1Codec().versionOf(v.value)).toBe(v.version);
    });

    it(`${v.name}: is published in docs/format.md`, () => {
      expect(formatDoc).toContain(v.value);
      expect(formatDoc).toContain(v.nonce_hex);
      if (v.aad_hex !== undefined) expect(formatDoc).toContain(v.aad_hex);
      if (v.info_hex !== undefined) expect(formatDoc).toContain(v.info_hex);
      if (v.derived_key_hex !== undefined) expect(formatDoc).toContain(v.derived_key_hex);
    });
  }

  for (const v of vectors.negative) {
    it(`${v.name}: fails with ${v.reason}`, () => {
      const keys = Object.fromEntries(Object.entries(v.keys).map(([ver, k]) => [ver, hex(k)]));
      const err = failure(CiphertextError, () => decryptForRow(v.value, lookup(keys), specOf(v), rowOf(v.row), { table: v.table, column: v.column }));
      expect(err.reason).toBe(v.reason);
      expect(err.message).not.toContain(Object.values(v.keys)[0]!);
      expect(err.message).not.toContain(Object.values(keys)[0]!.toString('base64'));
    });

    it(`${v.name}: is listed in docs/format.md`, () => {
      expect(formatDoc).toContain(`\`${v.name}\``);
    });
  }

  it('a value written with AAD does not open with the default codec, and a default value opens with empty AAD', () => {
    const p = vectors.positive.find((v) => v.name === 'aad-table-column-id')!;
    const keys = lookup({ v1: hex(p.key_hex) });
    expect(failure(CiphertextError, () => new AesGcmV1Codec().decrypt(p.value, keys)).reason).toBe('authentication-failed');
    const plain = new AesGcmV1Codec().encrypt('x', 'v1', hex(p.key_hex));
    expect(decryptBound(plain, keys, Buffer.alloc(0))).toBe('x');
    expect(decryptForRow(plain, keys, {}, {}, { table: 't', column: 'c' })).toBe('x');
  });
});

describe('templates', () => {
  for (const t of vectors.template_errors) {
    it(`${JSON.stringify(t.template)} is refused (${t.code})`, () => {
      const { errors } = checkTemplate(t.template);
      expect(errors.map((e) => e.code)).toContain(t.code);
      const err = failure(ContextTemplateError, () => templateColumns(t.template));
      expect(err.issues.map((i) => i.code)).toContain(t.code);
      expect(err.message).toContain(JSON.stringify(t.template));
      failure(ContextTemplateError, () => renderTemplate(t.template, { id: 1 }, { table: 't', column: 'c' }));
    });
  }

  it('errors are readable, give the position and say how to write a literal brace', () => {
    expect(checkTemplate('{tenant_id/{id}').errors).toEqual([
      { code: 'unclosed-brace', position: 1, message: 'unclosed "{" at character 1 (write "{{" for a literal "{")' },
    ]);
    expect(checkTemplate('a}b').errors[0]!.message).toBe('unmatched "}" at character 2 (write "}}" for a literal "}")');
    expect(checkTemplate('{ id }').errors[0]!.message).toContain('a name is a column identifier');
    expect(checkTemplate('x{}').errors[0]).toMatchObject({ code: 'empty-name', position: 2 });
    // Every problem, not only the first.
    expect(checkTemplate('{}:{1}:}').errors.map((e) => e.code)).toEqual(['empty-name', 'not-an-identifier', 'unmatched-brace']);
  });

  it('warns about templates that bind less than they seem to', () => {
    expect(checkTemplate('constant').warnings.map((w) => w.code)).toEqual(['binds-nothing']);
    expect(checkTemplate('{table}.{column}').warnings.map((w) => w.code)).toEqual(['no-row-column']);
    expect(checkTemplate('{tenant_id}{id}').warnings.map((w) => w.code)).toEqual(['adjacent-values']);
    expect(checkTemplate('{table}.{column}:{tenant_id}/{id}')).toEqual({ errors: [], warnings: [] });
  });

  it('templateColumns lists the row columns once each, in order, without table and column', () => {
    expect(templateColumns('{table}.{column}:{tenant_id}/{id}:{tenant_id}')).toEqual(['tenant_id', 'id']);
    expect(templateColumns('{{id}}:{table}')).toEqual([]);
  });

  it('doubled braces are literal; the rest is UTF-8 as written', () => {
    const names = { table: 'tbl', column: 'col' };
    expect(renderTemplate('{{{id}}}', { id: 5 }, names).toString()).toBe('{5}');
    expect(renderTemplate('{{id}}', {}, names).toString()).toBe('{id}');
    expect(renderTemplate('é/{table}/{column}', {}, names).toString('hex')).toBe('c3a92f74626c2f636f6c');
  });

  it('renders integers as decimal text, bigints exactly, bytes raw, text verbatim', () => {
    const names = { table: 't', column: 'c' };
    const r = (row: Record<string, unknown>): string => renderTemplate('{v}', row, names).toString('latin1');
    expect(r({ v: 42 })).toBe('42');
    expect(r({ v: -0 })).toBe('0');
    expect(r({ v: -7 })).toBe('-7');
    expect(r({ v: 2n ** 64n })).toBe('18446744073709551616');
    expect(r({ v: Number.MAX_SAFE_INTEGER })).toBe('9007199254740991');
    expect(r({ v: '0042' })).toBe('0042');
    expect(r({ v: new Uint8Array([0, 255, 123]) })).toBe('\x00\xff{');
  });

  for (const t of vectors.render_errors) {
    it(`${JSON.stringify(t.template)} over ${JSON.stringify(t.row)} is refused (${t.problem})`, () => {
      const err = failure(ContextValueError, () => renderTemplate(t.template, rowOf(t.row), { table: 't', column: 'c' }));
      expect(err.problem).toBe(t.problem);
    });
  }

  it('refuses unsafe numbers, dates, lone surrogates, and never puts a value in the message', () => {
    const names = { table: 't', column: 'c' };
    const cases: [unknown, string][] = [
      [2 ** 53, 'read the column as a bigint'],
      [1e21, 'read the column as a bigint'],
      [Number.NaN, 'not an integer'],
      [new Date(0), 'a date'],
      [{ x: 1 }, 'an object'],
      ['secret\ud800', 'lone UTF-16 surrogate'],
    ];
    for (const [value, says] of cases) {
      const err = failure(ContextValueError, () => renderTemplate('{table}:{secret_col}', { secret_col: value }, names));
      expect(err).toMatchObject({ problem: 'unsupported', column: 'secret_col' });
      expect(err.message).toContain(says);
      expect(err.message).not.toContain('secret\ud800');
    }
    const nul = failure(ContextValueError, () => renderTemplate('{tenant_id}/{id}', { tenant_id: null, id: 1 }, names));
    expect(nul.message).toBe('column "tenant_id" is NULL in this row: a NULL context cannot bind a value to its row');
    expect(failure(ContextValueError, () => renderTemplate('{id}', { ID: 1 }, names)).message).toContain('the row has no column "id"');
    expect(() => renderTemplate('{id}', { id: 1 }, { table: '', column: 'c' })).toThrow(RangeError);
  });
});

describe('derived keys', () => {
  it('HKDF-SHA256 with an empty salt: the RFC 5869 construction, by hand', async () => {
    const { createHmac } = await import('node:crypto');
    const ikm = randomBytes(32);
    const info = Buffer.from('users.email:42');
    const prk = createHmac('sha256', Buffer.alloc(32)).update(ikm).digest();
    const okm = createHmac('sha256', prk)
      .update(Buffer.concat([info, Buffer.from([1])]))
      .digest();
    expect(deriveKey(ikm, info).equals(okm)).toBe(true);
  });

  it('differs per row and per version, and refuses bad keys and oversize info', () => {
    const k = randomBytes(32);
    expect(deriveKey(k, Buffer.from('1')).equals(deriveKey(k, Buffer.from('2')))).toBe(false);
    expect(deriveKey(k, Buffer.from('1')).equals(deriveKey(randomBytes(32), Buffer.from('1')))).toBe(false);
    expect(deriveKey(k, Buffer.from('1')).equals(k)).toBe(false);
    expect(() => deriveKey(randomBytes(16), Buffer.from('1'))).toThrow(RangeError);
    expect(deriveKey(k, Buffer.alloc(MAX_INFO_BYTES, 0x61))).toHaveLength(32);
    expect(failure(ContextValueError, () => deriveKey(k, Buffer.alloc(MAX_INFO_BYTES + 1))).problem).toBe('too-long');
  });

  it('derivedKeys keeps unknown versions unknown', () => {
    const keys = derivedKeys(lookup({ v1: randomBytes(32) }), Buffer.from('x'));
    expect(keys('v1')).toHaveLength(32);
    expect(keys('v2')).toBeUndefined();
  });
});

describe('bad input never yields wrong plaintext', () => {
  const key = randomBytes(32);
  const spec = { aad: '{table}.{column}:{id}', derive: '{id}' };
  const names = { table: 'users', column: 'email' };
  const value = encryptForRow('bob@example.org', 'v3', key, spec, { id: 7 }, names);
  const keys = lookup({ v3: key });

  it('every single-character change fails with a CiphertextError or yields the same plaintext; every truncation fails', () => {
    for (let i = 0; i < value.length; i++) {
      for (const ch of 'Av0+/=:x') {
        if (value[i] === ch) continue;
        const mutated = value.slice(0, i) + ch + value.slice(i + 1);
        let out: string | undefined;
        try {
          out = decryptForRow(mutated, keys, spec, { id: 7 }, names);
        } catch (err) {
          expect(err).toBeInstanceOf(CiphertextError);
          continue;
        }
        // Only non-canonical base64 padding bits can change without changing the bytes (as in the default codec).
        expect(out).toBe('bob@example.org');
      }
    }
    for (let n = 0; n < value.length; n++) failure(CiphertextError, () => decryptForRow(value.slice(0, n), keys, spec, { id: 7 }, names));
  });

  it('a value moved to another row, column or table, or read with another key, fails with authentication-failed', () => {
    // An integer, a bigint and text of the same digits render the same bytes: one column has one type.
    expect(decryptForRow(value, keys, spec, { id: 7n }, names)).toBe('bob@example.org');
    expect(decryptForRow(value, keys, spec, { id: '7' }, names)).toBe('bob@example.org');
    const moved: [Record<string, unknown>, { table: string; column: string }][] = [
      [{ id: 8 }, names],
      [{ id: '07' }, names],
      [{ id: 7 }, { table: 'users', column: 'phone' }],
      [{ id: 7 }, { table: 'admins', column: 'email' }],
    ];
    for (const [row, n] of moved) {
      expect(failure(CiphertextError, () => decryptForRow(value, keys, spec, row, n)).reason).toBe('authentication-failed');
    }
    const err = failure(CiphertextError, () => decryptForRow(value, lookup({ v3: randomBytes(32) }), spec, { id: 7 }, names));
    expect(err.reason).toBe('authentication-failed');
    expect(err.message).toContain('copied from another row');
    expect(err.message).not.toContain(key.toString('base64'));
    expect(err.message).not.toContain(key.toString('hex'));
  });

  it('non-strings are malformed; bad keys, nonces and versions are programming errors', () => {
    expect(failure(CiphertextError, () => decryptBound(42 as unknown as string, keys, Buffer.alloc(0))).reason).toBe('malformed');
    expect(() => encryptBound('x', 'v1', randomBytes(16), Buffer.alloc(0))).toThrow(RangeError);
    expect(() => encryptBound('x', 'one', key, Buffer.alloc(0))).toThrow(RangeError);
    expect(() => encryptBound('x', 'v1', key, Buffer.alloc(0), { nonce: randomBytes(16) })).toThrow(RangeError);
  });

  it('round-trips random text with fresh nonces', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const text = randomBytes(i % 40).toString('base64') + (i % 3 === 0 ? ' ☕ 😀 ü' : '') + (i % 5 === 0 ? '\ufeff' : '');
      const row = { id: BigInt(i) * 2n ** 40n, tenant: `t${i % 4}` };
      const v = encryptForRow(text, 'v3', key, { aad: '{tenant}/{id}', derive: '{tenant}' }, row, names);
      expect(decryptForRow(v, keys, { aad: '{tenant}/{id}', derive: '{tenant}' }, row, names)).toBe(text);
      const nonce = v.split(':')[1]!;
      expect(seen.has(nonce)).toBe(false);
      seen.add(nonce);
    }
  });
});

describe('docs/format.md', () => {
  it('has the section, with the salt, the info limit and how a target selects it', () => {
    const at = formatDoc.indexOf('## Associated data and derived keys');
    expect(at).toBeGreaterThan(0);
    const section = formatDoc.slice(at);
    expect(section).toContain('test/vectors/context.json');
    expect(section).toContain('salt=None');
    expect(section).toContain(String(MAX_INFO_BYTES));
    expect(section).toContain('aad: "{table}.{column}:{tenant_id}/{id}"');
    expect(section).toContain('from: { codec: aes-gcm }');
  });
});

// Values keyctl writes must be readable by the applications that use Python's cryptography.
const ci = process.env.CI === 'true' || process.env.CI === '1';
const python = spawnSync('python3', ['-c', 'import cryptography.hazmat.primitives.ciphers.aead, cryptography.hazmat.primitives.kdf.hkdf'], {
  encoding: 'utf8',
});
const havePython = python.status === 0;
if (!havePython && !ci) {
  console.warn(
    'SKIPPED: the row-context interoperability tests need python3 with the cryptography package (apt-get install python3-cryptography); under CI=true they fail instead',
  );
}

type TypedOut = { int: number } | { bigint: string } | { text: string } | { bytes_hex: string };
function toTyped(row: Record<string, unknown>): Record<string, TypedOut> {
  return Object.fromEntries(
    Object.entries(row).map(([k, v]): [string, TypedOut] => {
      if (typeof v === 'number') return [k, { int: v }];
      if (typeof v === 'bigint') return [k, { bigint: v.toString() }];
      if (typeof v === 'string') return [k, { text: v }];
      if (v instanceof Uint8Array) return [k, { bytes_hex: Buffer.from(v).toString('hex') }];
      throw new Error(`cannot type ${typeof v}`);
    }),
  );
}

describe.skipIf(!havePython && !ci)('interoperability with Python cryptography (AESGCM, HKDF)', () => {
  const script = (name: string): string => fileURLToPath(new URL(name, vectorsDir));
  const runCheck = (values: unknown[]) =>
    spawnSync('python3', [script('check_context_with_python.py')], { input: JSON.stringify({ values }), encoding: 'utf8' });

  it('python3 with cryptography is available', () => {
    expect(python.error?.message ?? python.stderr).toBe('');
    expect(python.status).toBe(0);
  });

  it('Python renders the same context, decrypts what keyctl encrypts, and refuses it in another row', () => {
    const cases: [RowContextSpec, { table: string; column: string }, Record<string, unknown>, Record<string, unknown>, string][] = [
      [{ aad: '{table}.{column}:{id}' }, { table: 'users', column: 'email' }, { id: 42 }, { id: 43 }, 'alice@example.com'],
      [{ aad: '{tenant_id}/{id}' }, { table: 'orders', column: 'pan' }, { tenant_id: 7, id: 2n ** 63n - 1n }, { tenant_id: 7, id: 2n ** 63n - 2n }, ''],
      [{ aad: '{{{tenant}}}:{id}' }, { table: 'n', column: 'b' }, { tenant: 'Zürich 東京 🚀', id: -3 }, { tenant: 'Zurich 東京 🚀', id: -3 }, 'Zoë Ωmega'],
      [{ aad: '{table}:{uuid}' }, { table: 'devices', column: 'tok' }, { uuid: randomBytes(16) }, { uuid: randomBytes(16) }, '\ufeffbom'],
      [{ derive: '{user_id}' }, { table: 'profiles', column: 'dob' }, { user_id: 1001 }, { user_id: 1002 }, '1985-10-26'],
      [{ derive: 'profile:{id}}}' }, { table: 'profiles', column: 'ssn' }, { id: 9007199254740993n }, { id: 9007199254740992n }, 'x'.repeat(100)],
      [
        { aad: '{table}.{column}:{tenant_id}/{id}', derive: '{tenant_id}' },
        { table: 'accounts', column: 'iban' },
        { tenant_id: 'acme', id: 5 },
        { tenant_id: 'acme', id: 6 },
        'a:b\nc',
      ],
    ];
    const values = cases.map(([spec, names, row, other, plaintext], i) => {
      const key = randomBytes(32);
      const ctx = rowContext(spec, row, names);
      return {
        name: `keyctl-${i}`,
        key_hex: key.toString('hex'),
        value: encryptForRow(plaintext, `v${i + 1}`, key, spec, row, names),
        plaintext,
        aad: spec.aad ?? null,
        derive: spec.derive ?? null,
        ...names,
        row: toTyped(row),
        other_row: toTyped(other),
        ...(spec.aad === undefined ? {} : { aad_hex: ctx.aad.toString('hex') }),
        ...(ctx.info === undefined ? {} : { info_hex: ctx.info.toString('hex') }),
      };
    });
    const run = runCheck(values);
    expect(run.stderr).toBe('');
    expect(run.stdout).not.toContain('MISMATCH');
    expect(run.stdout.trim().split('\n')).toHaveLength(values.length);
    expect(run.status).toBe(0);
  });

  it('the check script exits non-zero when a value was written without its context', () => {
    const key = randomBytes(32);
    const names = { table: 'users', column: 'email' };
    const unbound = encryptBound('a', 'v1', key, Buffer.alloc(0));
    const run = runCheck([
      { name: 'unbound', key_hex: key.toString('hex'), value: unbound, plaintext: 'a', aad: '{id}', derive: null, ...names, row: { id: { int: 1 } } },
    ]);
    expect(run.stdout).toContain('MISMATCH');
    expect(run.status).toBe(1);
  });

  it('context.json is what Python makes from the same keys and nonces', () => {
    const run = spawnSync('python3', [script('make_context_vectors.py'), '--check'], { encoding: 'utf8' });
    expect(run.stdout).toContain('context.json: ok');
    expect(run.status).toBe(0);
  });
});
