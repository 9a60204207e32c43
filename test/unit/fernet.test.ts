import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CiphertextError } from '../../src/crypto/codec.js';
import { decrypt, encrypt, FernetCodec, FernetTtlError, fernetKeyFromString, fernetKeyToString } from '../../src/crypto/fernet.js';

interface Positive {
  name: string;
  key_hex: string;
  key_b64url: string;
  now: number;
  now_iso: string;
  iv_hex: string;
  plaintext: string;
  prefix: string;
  value: string;
}

interface Negative {
  name: string;
  key_hex: string;
  prefix: string;
  value: string;
  reason: string;
  python_rejects: boolean;
  ttl_seconds?: number;
  now?: number;
}

interface Multi {
  keys: { version: string; key_hex: string }[];
  value: string;
  plaintext: string;
  version: string;
  tried: number;
}

const vectorsDir = new URL('../vectors/', import.meta.url);
const vectors = JSON.parse(readFileSync(new URL('fernet.json', vectorsDir), 'utf8')) as { positive: Positive[]; negative: Negative[]; multi: Multi };
const formatDoc = readFileSync(new URL('../../docs/format.md', import.meta.url), 'utf8');
const hex = (h: string): Buffer => Buffer.from(h, 'hex');
const at = (seconds: number): Date => new Date(seconds * 1000);

function failure(fn: () => unknown): CiphertextError {
  let out: unknown;
  try {
    out = fn();
  } catch (err) {
    expect(err).toBeInstanceOf(CiphertextError);
    return err as CiphertextError;
  }
  throw new Error(`expected a CiphertextError, got ${JSON.stringify(out)}`);
}

describe('Fernet test vectors (made with Python cryptography.fernet)', () => {
  it('covers empty, non-ASCII, prefixed and the spec acceptance vector', () => {
    const names = vectors.positive.map((v) => v.name);
    expect(names).toContain('spec-hello');
    expect(vectors.positive.some((v) => v.plaintext === '')).toBe(true);
    expect(vectors.positive.some((v) => Buffer.byteLength(v.plaintext) > v.plaintext.length)).toBe(true);
    expect(vectors.positive.some((v) => v.prefix !== '')).toBe(true);
    const reasons = new Set(vectors.negative.map((v) => v.reason));
    expect(reasons).toEqual(new Set(['malformed', 'authentication-failed', 'invalid-utf8']));
  });

  for (const v of vectors.positive) {
    it(`${v.name}: decrypts, and re-encrypts byte-identically with the same time and IV`, () => {
      const key = hex(v.key_hex);
      expect(fernetKeyToString(key)).toBe(v.key_b64url);
      expect(fernetKeyFromString(v.key_b64url).equals(key)).toBe(true);
      expect(new Date(v.now_iso).getTime()).toBe(v.now * 1000);
      const codec = new FernetCodec({ prefix: v.prefix });
      expect(codec.decrypt(v.value, key)).toBe(v.plaintext);
      expect(codec.encrypt(v.plaintext, 'v1', key, { now: at(v.now), iv: hex(v.iv_hex) })).toBe(v.value);
      expect(codec.isWellFormed(v.value)).toBe(true);
      expect(new RegExp(codec.shapePattern).test(v.value)).toBe(true);
      const token = v.value.slice(v.prefix.length);
      expect(decrypt(token, key)).toBe(v.plaintext);
      expect(encrypt(v.plaintext, key, { now: at(v.now), iv: hex(v.iv_hex) })).toBe(token);
    });

    it(`${v.name}: is published in docs/format.md`, () => {
      expect(formatDoc).toContain(v.value);
      expect(formatDoc).toContain(v.key_b64url);
      expect(formatDoc).toContain(v.iv_hex);
    });
  }

  for (const v of vectors.negative) {
    it(`${v.name}: fails with ${v.reason}`, () => {
      const key = hex(v.key_hex);
      const codec = new FernetCodec({ prefix: v.prefix });
      const opts = v.ttl_seconds === undefined ? {} : { ttlSeconds: v.ttl_seconds, now: at(v.now!) };
      expect(failure(() => codec.decrypt(v.value, key, opts)).reason).toBe(v.reason);
      const any = failure(() => codec.decryptWithAny(v.value, [['v1', key]], opts));
      expect(any.reason).toBe(v.reason);
    });
  }

  it('the TTL failures say which problem they are, and the boundaries are inclusive as in Python', () => {
    const expired = vectors.negative.find((v) => v.name === 'expired')!;
    const key = hex(expired.key_hex);
    const err = failure(() => decrypt(expired.value, key, { ttlSeconds: 60, now: at(expired.now!) }));
    expect(err).toBeInstanceOf(FernetTtlError);
    expect((err as FernetTtlError).problem).toBe('expired');
    const future = vectors.negative.find((v) => v.name === 'from-the-future')!;
    expect((failure(() => decrypt(future.value, key, { ttlSeconds: 60, now: at(future.now!) })) as FernetTtlError).problem).toBe('from-the-future');
    const made = expired.now! - 61;
    expect(decrypt(expired.value, key, { ttlSeconds: 60, now: at(made + 60) })).toBe('alice@example.com');
    expect(decrypt(expired.value, key, { ttlSeconds: 60, now: at(made - 60) })).toBe('alice@example.com');
    expect(decrypt(expired.value, key)).toBe('alice@example.com');
  });
});

describe('bad input never yields wrong plaintext', () => {
  const key = randomBytes(32);
  const plain = 'bob@example.org';
  const token = encrypt(plain, key);

  it('every single-character change fails with a CiphertextError', () => {
    for (let i = 0; i < token.length; i++) {
      for (const ch of 'Ag0-_=+/:') {
        if (token[i] === ch) continue;
        const mutated = token.slice(0, i) + ch + token.slice(i + 1);
        expect(['malformed', 'authentication-failed']).toContain(failure(() => decrypt(mutated, key)).reason);
      }
    }
  });

  it('every truncation fails with a CiphertextError', () => {
    for (let n = 0; n < token.length; n++) {
      expect(['malformed', 'authentication-failed']).toContain(failure(() => decrypt(token.slice(0, n), key)).reason);
    }
  });

  it('non-strings are malformed, bad keys and IVs are programming errors', () => {
    expect(failure(() => decrypt(42 as unknown as string, key)).reason).toBe('malformed');
    expect(failure(() => new FernetCodec().decryptWithAny(null as unknown as string, [['v1', key]])).reason).toBe('malformed');
    expect(() => decrypt(token, randomBytes(16))).toThrow(RangeError);
    expect(() => encrypt(plain, key, { iv: randomBytes(12) })).toThrow(RangeError);
    expect(() => new FernetCodec().encrypt(plain, 'one', key)).toThrow(RangeError);
    expect(() => fernetKeyFromString('AAAA')).toThrow(RangeError);
  });

  it('round-trips random text with fresh IVs', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 300; i++) {
      const text = randomBytes(i % 40).toString('base64') + (i % 3 === 0 ? ' ☕ 😀 ü' : '');
      const t = encrypt(text, key);
      expect(decrypt(t, key)).toBe(text);
      const iv = Buffer.from(t, 'base64url').subarray(9, 25).toString('hex');
      expect(seen.has(iv)).toBe(false);
      seen.add(iv);
    }
  });
});

describe('MultiFernet-style lookup', () => {
  const m = vectors.multi;
  const keyring = m.keys.map((k) => [k.version, hex(k.key_hex)] as const);
  const codec = new FernetCodec();

  it('finds the key Python found, after trying the keys before it in order', () => {
    const got = codec.decryptWithAny(m.value, keyring);
    expect(got).toMatchObject({ plaintext: m.plaintext, version: m.version, tried: m.tried });
    expect(got.timestamp).toBe(1767225600);
  });

  it('the order decides the cost: first key first', () => {
    expect(codec.decryptWithAny(m.value, [...keyring].reverse())).toMatchObject({ version: m.version, tried: 1 });
  });

  it('the first key that authenticates wins when two versions hold the same key', () => {
    const key = randomBytes(32);
    const token = codec.encrypt('same', 'v2', key);
    expect(
      codec.decryptWithAny(token, [
        ['v1', randomBytes(32)],
        ['v3', key],
        ['v2', key],
      ]),
    ).toMatchObject({ version: 'v3', tried: 2 });
  });

  it('no key: authentication-failed after trying all; malformed before trying any', () => {
    expect(failure(() => codec.decryptWithAny(m.value, keyring.slice(0, 2))).reason).toBe('authentication-failed');
    expect(failure(() => codec.decryptWithAny(m.value, [])).reason).toBe('authentication-failed');
    expect(failure(() => codec.decryptWithAny('v1:AAAA:BBBB', keyring)).reason).toBe('malformed');
  });
});

describe('prefix', () => {
  const key = randomBytes(32);
  const codec = new FernetCodec({ prefix: 'FERNET_V1:' });

  it('is written in front of the token and required on decrypt', () => {
    const value = codec.encrypt('x', 'v1', key);
    expect(value.startsWith('FERNET_V1:gA')).toBe(true);
    expect(codec.decrypt(value, key)).toBe('x');
    expect(codec.decryptWithAny(value, [['v1', key]]).plaintext).toBe('x');
    expect(failure(() => codec.decrypt(value.slice('FERNET_V1:'.length), key)).reason).toBe('malformed');
    expect(failure(() => new FernetCodec().decrypt(value, key)).reason).toBe('malformed');
    expect(failure(() => codec.decrypt(`fernet_v1:${value.slice(10)}`, key)).reason).toBe('malformed');
  });

  it('regular-expression characters in the prefix are matched literally by shapePattern', () => {
    const odd = new FernetCodec({ prefix: 'enc(1).' });
    const value = odd.encrypt('x', 'v1', key);
    expect(new RegExp(odd.shapePattern).test(value)).toBe(true);
    expect(new RegExp(odd.shapePattern).test(`encX1Y.${value.slice(7)}`)).toBe(false);
  });
});

describe('shapePattern matches exactly the well-formed values', () => {
  it('agrees with the decoder on tokens of every length class and on their mutations', () => {
    const codec = new FernetCodec({ prefix: 'F:' });
    const shape = new RegExp(codec.shapePattern);
    const key = randomBytes(32);
    const samples: string[] = [];
    for (let n = 0; n < 60; n += 5) {
      const v = codec.encrypt('x'.repeat(n), 'v1', key);
      samples.push(v);
      for (let i = 0; i < v.length; i += 7) {
        samples.push(v.slice(0, i) + v.slice(i + 1));
        samples.push(`${v.slice(0, i)}=${v.slice(i + 1)}`);
        samples.push(`${v.slice(0, i)}+${v.slice(i + 1)}`);
        samples.push(`${v.slice(0, i)}B${v.slice(i + 1)}`);
        samples.push(`${v.slice(0, i)}w${v.slice(i + 1)}`);
      }
      samples.push(v.slice(0, -16), `${v}AAAA`, v.replace(/=+$/, ''));
    }
    for (const v of vectors.negative) samples.push(`F:${v.value}`);
    for (const s of samples) expect([s, shape.test(s)]).toEqual([s, codec.isWellFormed(s)]);
  });

  it('is published in docs/format.md', () => {
    expect(formatDoc).toContain(new FernetCodec().shapePattern);
  });
});

// Tokens keyctl writes must be readable by the applications that use Python's Fernet.
const ci = process.env.CI === 'true' || process.env.CI === '1';
const python = spawnSync('python3', ['-c', 'import cryptography.fernet'], { encoding: 'utf8' });
const havePython = python.status === 0;
if (!havePython && !ci) {
  console.warn(
    'SKIPPED: the Fernet interoperability tests need python3 with the cryptography package (apt-get install python3-cryptography); under CI=true they fail instead',
  );
}

describe.skipIf(!havePython && !ci)('interoperability with Python cryptography.fernet', () => {
  const script = (name: string): string => fileURLToPath(new URL(name, vectorsDir));

  it('python3 with cryptography is available', () => {
    expect(python.error?.message ?? python.stderr).toBe('');
    expect(python.status).toBe(0);
  });

  it('Python decrypts what keyctl encrypts, and encrypts the same time and IV to the same token', () => {
    const tokens = [];
    for (const [i, plaintext] of ['', 'alice@example.com', 'Zoë Ωmega 日本語 🚀', '\ufeffbom', 'x'.repeat(100), 'a:b\nc'].entries()) {
      const key = randomBytes(32);
      const iv = randomBytes(16);
      const now = 1767225600 + i * 97;
      const prefix = i % 2 === 0 ? '' : 'FERNET_V1:';
      const value = new FernetCodec({ prefix }).encrypt(plaintext, 'v1', key, { now: at(now), iv });
      tokens.push({ name: `keyctl-${i}`, key_hex: key.toString('hex'), value, prefix, plaintext, now, iv_hex: iv.toString('hex') });
      // And one with a random IV and the current time, as keyctl writes them.
      const fresh = new FernetCodec({ prefix }).encrypt(plaintext, 'v1', key);
      tokens.push({ name: `keyctl-${i}-fresh`, key_hex: key.toString('hex'), value: fresh, prefix, plaintext });
    }
    const run = spawnSync('python3', [script('check_fernet_with_python.py')], { input: JSON.stringify({ tokens }), encoding: 'utf8' });
    expect(run.stderr).toBe('');
    expect(run.stdout).not.toContain('MISMATCH');
    expect(run.status).toBe(0);
  });

  it('the check script exits non-zero on a mismatch', () => {
    const key = randomBytes(32);
    const tokens = [{ name: 'wrong', key_hex: key.toString('hex'), value: encrypt('a', key), plaintext: 'b' }];
    const run = spawnSync('python3', [script('check_fernet_with_python.py')], { input: JSON.stringify({ tokens }), encoding: 'utf8' });
    expect(run.stdout).toContain('MISMATCH');
    expect(run.status).toBe(1);
  });

  it('fernet.json is what Python makes from the same keys, times and IVs', () => {
    const run = spawnSync('python3', [script('make_fernet_vectors.py'), '--check'], { encoding: 'utf8' });
    expect(run.stdout).toContain('fernet.json: ok');
    expect(run.status).toBe(0);
  });
});
