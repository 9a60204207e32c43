/**
 * isBase64 (the text ciphertext format's base64 check) accepts exactly the language of the
 * canonical expression it stands for: random strings over the alphabet and the characters that
 * come near it (padding, URL-safe letters, whitespace, other scripts), plus real encodings.
 */
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isBase64 } from '../../src/crypto/base64.js';

const REFERENCE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const ALPHABET = [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'];
const NEAR = ['=', '-', '_', ' ', '\n', '.', ':', 'é', '☕', '\u0000', String.fromCharCode(127), String.fromCharCode(128 + 65)];
// Mostly the alphabet, so that valid strings (and ones one character away from valid) are common.
const CHAR = fc.oneof({ weight: 8, arbitrary: fc.constantFrom(...ALPHABET) }, { weight: 1, arbitrary: fc.constantFrom(...NEAR) });

describe('isBase64', () => {
  it('agrees with the canonical expression on random strings near the alphabet', () => {
    fc.assert(
      fc.property(fc.array(CHAR, { maxLength: 24 }), (chars) => {
        const s = chars.join('');
        expect(isBase64(s)).toBe(REFERENCE.test(s));
      }),
      { numRuns: 20_000, seed: 22 },
    );
  });

  it('accepts every encoding of 0–64 random bytes, and agrees with the canonical expression once one character is changed', () => {
    for (let n = 0; n <= 64; n++) {
      const s = randomBytes(n).toString('base64');
      expect(isBase64(s)).toBe(true);
      if (s.length === 0) continue;
      for (const bad of ['-', '_', '=', ' ', 'é']) {
        const at = n % s.length;
        const t = s.slice(0, at) + bad + s.slice(at + 1);
        expect(isBase64(t), t).toBe(REFERENCE.test(t));
      }
    }
    for (const s of ['=', '==', '===', '====', 'A===', 'AA=A', 'AAA', 'AAAA=', 'AA==AAAA']) expect(isBase64(s), s).toBe(false);
  });
});
