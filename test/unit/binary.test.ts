/**
 * Binary values (src/crypto/binary.ts) against the vectors Python made (test/vectors/binary.json),
 * and Python's check of values keyctl writes.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { BINARY_MIN_BYTES, binaryVersionOf, decryptBinary, encryptBinary, isBinaryWellFormed } from '../../src/crypto/binary.js';
import { CiphertextError } from '../../src/crypto/codec.js';

interface Positive {
  name: string;
  version: string;
  key_hex: string;
  nonce_hex: string;
  plaintext_hex: string;
  value_hex: string;
}
interface Negative {
  name: string;
  value_hex: string;
  key_hex: string;
  reason: string;
}
const doc = JSON.parse(readFileSync(new URL('../vectors/binary.json', import.meta.url), 'utf8')) as { positive: Positive[]; negative: Negative[] };
const formatDoc = readFileSync(new URL('../../docs/format.md', import.meta.url), 'utf8');
const hex = (h: string) => Buffer.from(h, 'hex');

describe('binary vectors made by Python', () => {
  it.each(doc.positive)('$name', (v) => {
    const value = encryptBinary(hex(v.plaintext_hex), v.version, hex(v.key_hex), { nonce: hex(v.nonce_hex) });
    expect(value.toString('hex')).toBe(v.value_hex);
    expect(isBinaryWellFormed(value)).toBe(true);
    expect(binaryVersionOf(value)).toBe(v.version);
    expect(decryptBinary(hex(v.value_hex), (ver) => (ver === v.version ? hex(v.key_hex) : undefined)).toString('hex')).toBe(v.plaintext_hex);
    // A Uint8Array (as worker threads hand values back) decrypts the same.
    expect(decryptBinary(new Uint8Array(hex(v.value_hex)), () => hex(v.key_hex)).toString('hex')).toBe(v.plaintext_hex);
  });

  it.each(doc.negative)('$name is refused as $reason', (v) => {
    const err = (() => {
      try {
        decryptBinary(hex(v.value_hex), () => hex(v.key_hex));
      } catch (e) {
        return e;
      }
      return null;
    })();
    expect(err).toBeInstanceOf(CiphertextError);
    expect((err as CiphertextError).reason).toBe(v.reason);
  });
});

describe('binary values', () => {
  it('round-trips random bytes under random keys, with a fresh nonce each time', () => {
    const key = randomBytes(32);
    for (const size of [0, 1, 15, 16, 17, 4096]) {
      const plain = randomBytes(size);
      const a = encryptBinary(plain, 'v9', key);
      expect(a.length).toBe(BINARY_MIN_BYTES + size);
      expect(encryptBinary(plain, 'v9', key).equals(a)).toBe(false);
      expect(decryptBinary(a, () => key).equals(plain)).toBe(true);
    }
  });

  it('names the version it carries and refuses what it cannot carry, without quoting the value', () => {
    expect(() => encryptBinary(Buffer.from('x'), 'v65536', randomBytes(32))).toThrow(/v1 … v65535/);
    expect(() => encryptBinary(Buffer.from('x'), 'version2', randomBytes(32))).toThrow(/key version/);
    expect(() => decryptBinary('v1:abc', () => randomBytes(32))).toThrow(/not a binary value/);
    const value = encryptBinary(Buffer.from('secret bytes'), 'v4', randomBytes(32));
    const unknown = (() => {
      try {
        decryptBinary(value, () => undefined);
      } catch (e) {
        return e as CiphertextError;
      }
      return null;
    })();
    expect(unknown?.reason).toBe('unknown-version');
    expect(unknown?.version).toBe('v4');
    expect(unknown?.message).not.toContain('secret');
    expect(isBinaryWellFormed(value.subarray(0, BINARY_MIN_BYTES - 1))).toBe(false);
    expect(isBinaryWellFormed('text')).toBe(false);
  });

  it('docs/format.md has the section with the layout and the vectors file', () => {
    const at = formatDoc.indexOf('## Binary values');
    expect(at).toBeGreaterThan(0);
    const section = formatDoc.slice(at);
    expect(section).toContain('0xB1');
    expect(section).toContain('test/vectors/binary.json');
    expect(section).toContain(doc.positive[1]!.value_hex);
  });
});

const ci = process.env.CI === 'true' || process.env.CI === '1';
const havePython = spawnSync('python3', ['-c', 'import cryptography'], { encoding: 'utf8' }).status === 0;
const script = fileURLToPath(new URL('../vectors/make_binary_vectors.py', import.meta.url));

describe.skipIf(!havePython && !ci)('binary values: interoperability with Python', () => {
  it('binary.json is what Python makes', () => {
    const run = spawnSync('python3', [script, '--check'], { encoding: 'utf8' });
    expect(run.stdout).toContain('binary.json: ok');
    expect(run.status).toBe(0);
  });

  it('Python decrypts what keyctl encrypts', () => {
    const values = [0, 1, 31, 256, 5000].map((size, i) => {
      const key = randomBytes(32);
      const plain = randomBytes(size);
      return {
        name: `random-${size}`,
        key_hex: key.toString('hex'),
        plaintext_hex: plain.toString('hex'),
        value_hex: encryptBinary(plain, `v${1 + i * 700}`, key).toString('hex'),
      };
    });
    const run = spawnSync('python3', [script, '--verify', '-'], { input: JSON.stringify({ values }), encoding: 'utf8' });
    expect(run.stdout).not.toContain('MISMATCH');
    expect(run.status).toBe(0);
    expect(run.stdout.trim().split('\n')).toHaveLength(values.length);
  });

  it('the check exits non-zero on a mismatch', () => {
    const key = randomBytes(32);
    const values = [
      { name: 'wrong', key_hex: key.toString('hex'), plaintext_hex: '00', value_hex: encryptBinary(Buffer.from([1]), 'v1', key).toString('hex') },
    ];
    const run = spawnSync('python3', [script, '--verify', '-'], { input: JSON.stringify({ values }), encoding: 'utf8' });
    expect(run.stdout).toContain('MISMATCH');
    expect(run.status).toBe(1);
  });
});
