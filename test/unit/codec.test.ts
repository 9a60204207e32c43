import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AES_GCM_V1_SHAPE, AesGcmV1Codec, CiphertextError, isWellFormed } from '../../src/crypto/codec.js';

interface Vector {
  name: string;
  version: string;
  key_hex: string;
  key_b64: string;
  nonce_hex: string;
  plaintext: string;
  expected: string;
}

const vectors = (JSON.parse(readFileSync(new URL('../vectors/aes-gcm-v1.json', import.meta.url), 'utf8')) as { vectors: Vector[] }).vectors;
const formatDoc = readFileSync(new URL('../../docs/format.md', import.meta.url), 'utf8');
const codec = new AesGcmV1Codec();
const key = randomBytes(32);
const keyFor = (k: Buffer) => (v: string) => (v === 'v1' ? k : undefined);

function decryptError(value: string, lookup = keyFor(key)): CiphertextError {
  try {
    codec.decrypt(value, lookup);
  } catch (err) {
    expect(err).toBeInstanceOf(CiphertextError);
    return err as CiphertextError;
  }
  throw new Error(`decrypt(${JSON.stringify(value)}) did not fail`);
}

describe('aes-256-gcm-v1 test vectors (generated with Python cryptography AESGCM)', () => {
  it('has at least 5 vectors including empty and multi-byte UTF-8 plaintext', () => {
    expect(vectors.length).toBeGreaterThanOrEqual(5);
    expect(vectors.some((v) => v.plaintext === '')).toBe(true);
    expect(vectors.some((v) => Buffer.byteLength(v.plaintext) > v.plaintext.length)).toBe(true);
  });

  for (const v of vectors) {
    it(`${v.name}: encrypts to the expected string and decrypts back`, () => {
      const k = Buffer.from(v.key_hex, 'hex');
      expect(Buffer.from(v.key_b64, 'base64').equals(k)).toBe(true);
      expect(codec.encryptWithNonce(v.plaintext, v.version, k, Buffer.from(v.nonce_hex, 'hex'))).toBe(v.expected);
      expect(codec.decrypt(v.expected, (ver) => (ver === v.version ? k : undefined))).toBe(v.plaintext);
      expect(codec.versionOf(v.expected)).toBe(v.version);
    });

    it(`${v.name}: is published in docs/format.md`, () => {
      expect(formatDoc).toContain(v.expected);
      expect(formatDoc).toContain(v.key_hex);
      expect(formatDoc).toContain(v.nonce_hex);
    });
  }
});

describe('codec round trip', () => {
  it('round-trips random strings, including astral characters, with fresh nonces', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 500; i++) {
      const plain = randomBytes(i % 50).toString('base64') + (i % 3 === 0 ? ' ☕ 😀 ü' : '');
      const c = codec.encrypt(plain, 'v1', key);
      expect(codec.decrypt(c, keyFor(key))).toBe(plain);
      const nonce = c.split(':')[1]!;
      expect(seen.has(nonce)).toBe(false);
      seen.add(nonce);
    }
  });

  it('keeps a leading byte order mark (U+FEFF): a rotation must not change the plaintext', () => {
    for (const plain of ['\uFEFFhello', '\uFEFF', '\uFEFF\uFEFFx']) expect(codec.decrypt(codec.encrypt(plain, 'v1', key), keyFor(key))).toBe(plain);
  });
});

describe('bad input gives typed errors, never a crash or wrong plaintext', () => {
  const plain = 'bob@example.org';
  const good = codec.encrypt(plain, 'v1', key);

  it('every single-character change either fails with CiphertextError or yields the same plaintext', () => {
    const alphabet = 'Av0+/=:x';
    for (let i = 0; i < good.length; i++) {
      for (const ch of alphabet) {
        if (good[i] === ch) continue;
        const mutated = good.slice(0, i) + ch + good.slice(i + 1);
        let out: string | undefined;
        try {
          out = codec.decrypt(mutated, keyFor(key));
        } catch (err) {
          expect(err).toBeInstanceOf(CiphertextError);
          continue;
        }
        // Only non-canonical base64 padding bits can change without changing the bytes.
        expect(out).toBe(plain);
      }
    }
  });

  it('every truncation fails with a typed error', () => {
    for (let n = 0; n < good.length; n++) {
      const err = decryptError(good.slice(0, n));
      expect(['malformed', 'truncated', 'authentication-failed']).toContain(err.reason);
    }
  });

  it('a wrong key is authentication-failed', () => {
    expect(decryptError(good, keyFor(randomBytes(32))).reason).toBe('authentication-failed');
  });

  it('a version without a key is unknown-version', () => {
    const v9 = codec.encrypt(plain, 'v9', key);
    const err = decryptError(v9);
    expect(err.reason).toBe('unknown-version');
    expect(err.version).toBe('v9');
  });

  it('flipped tag bits are authentication-failed', () => {
    const [v, n, sealed] = good.split(':') as [string, string, string];
    const bytes = Buffer.from(sealed, 'base64');
    bytes[bytes.length - 1]! ^= 0x01;
    expect(decryptError(`${v}:${n}:${bytes.toString('base64')}`).reason).toBe('authentication-failed');
  });

  it('garbage is malformed', () => {
    for (const g of [
      '',
      'hello',
      'v1',
      'v1:',
      'v1::',
      ':::',
      'V1:AAAAAAAAAAAAAAAA:AAAAAAAAAAAAAAAAAAAAAA==',
      'v1:AAAA:AAAAAAAAAAAAAAAAAAAAAA==',
      'v1:AAAAAAAAAAAAAA==:AAAAAAAAAAAAAAAAAAAAAA==',
      'v1:AAAAAAAAAAAAAAAA:not base64!',
      'v1:AAAAAAAAAAAAAAAA:AAAA:AAAA',
      '{"json":true}',
      'v:AAAAAAAAAAAAAAAA:AAAAAAAAAAAAAAAAAAAAAA==',
    ]) {
      expect(decryptError(g).reason).toBe('malformed');
    }
    expect(decryptError(null as unknown as string).reason).toBe('malformed');
    expect(decryptError(42 as unknown as string).reason).toBe('malformed');
  });

  it('a too-short ciphertext is truncated', () => {
    expect(decryptError('v1:AAAAAAAAAAAAAAAA:AAAA').reason).toBe('truncated');
  });

  it('authenticated non-UTF-8 plaintext is invalid-utf8, not mangled text', async () => {
    const { createCipheriv } = await import('node:crypto');
    const nonce = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', key, nonce);
    const body = Buffer.concat([c.update(Buffer.from([0xff, 0xfe, 0x41])), c.final(), c.getAuthTag()]);
    expect(decryptError(`v1:${nonce.toString('base64')}:${body.toString('base64')}`).reason).toBe('invalid-utf8');
  });
});

describe('the SQL shape pattern agrees with the codec parser', () => {
  const shape = new RegExp(AES_GCM_V1_SHAPE);
  it('classifies values the same way (what SQL counts as unparseable is what decrypt calls malformed/truncated)', () => {
    const samples: string[] = ['', 'x', 'v1:AAAAAAAAAAAAAAAA:AAAA', 'v1:AAAAAAAAAAAAAA==:AAAAAAAAAAAAAAAAAAAAAA=='];
    for (let len = 0; len < 40; len++) samples.push(codec.encrypt('x'.repeat(len), `v${1 + (len % 12)}`, key));
    const base = samples.slice();
    for (const s of base) {
      for (let i = 0; i < s.length; i += 3) {
        samples.push(s.slice(0, i) + s.slice(i + 1));
        samples.push(`${s.slice(0, i)}=${s.slice(i + 1)}`);
        samples.push(`${s.slice(0, i)}:${s.slice(i + 1)}`);
      }
    }
    for (const s of samples) expect([s, shape.test(s)]).toEqual([s, isWellFormed(s)]);
  });
});

describe('docs/format.md', () => {
  it('shows the exact shape pattern the code uses', () => {
    expect(formatDoc).toContain(AES_GCM_V1_SHAPE);
  });
});
