/**
 * Blind index values (src/crypto/blind-index.ts) against the vectors Python made
 * (test/vectors/blind-index.json), and Python's check of values keyctl computes.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  BLIND_INDEX_SALT,
  BlindIndexer,
  blindIndexKey,
  blindIndexValue,
  blindIndexVersion,
  normalizeForIndex,
  type NormalizeStep,
} from '../../src/crypto/blind-index.js';

interface Vector {
  name: string;
  key_hex: string;
  version: string;
  table: string;
  source: string;
  normalize: NormalizeStep[];
  plaintext: string;
  normalized: string;
  index_key_hex: string;
  value: string;
}
const vectorsUrl = new URL('../vectors/blind-index.json', import.meta.url);
const doc = JSON.parse(readFileSync(vectorsUrl, 'utf8')) as { salt: string; positive: Vector[] };
const formatDoc = readFileSync(new URL('../../docs/format.md', import.meta.url), 'utf8');

describe('blind index vectors made by Python', () => {
  it('uses the documented salt', () => {
    expect(BLIND_INDEX_SALT.toString('utf8')).toBe(doc.salt);
  });

  it.each(doc.positive)('$name', (v) => {
    const key = Buffer.from(v.key_hex, 'hex');
    expect(normalizeForIndex(v.plaintext, v.normalize)).toBe(v.normalized);
    const indexKey = blindIndexKey(key, v.table, v.source);
    expect(indexKey.toString('hex')).toBe(v.index_key_hex);
    expect(blindIndexValue(v.plaintext, v.version, indexKey, v.normalize)).toBe(v.value);
    expect(new BlindIndexer(v.table, v.source, v.normalize).value(v.plaintext, v.version, key)).toBe(v.value);
    expect(blindIndexVersion(v.value)).toBe(v.version);
  });

  it('equal after normalisation means equal index; other version, column or key means another', () => {
    const by = Object.fromEntries(doc.positive.map((v) => [v.name, v.value]));
    expect(by['trim-lowercase']).toBe(by['exact-email']);
    expect(by.nfc).toBe(by['nfc-precomposed']);
    expect(new Set([by['exact-email'], by['other-version'], by['other-column'], by['bom-not-trimmed']]).size).toBe(4);
  });
});

describe('blind index values', () => {
  it('names its version, and only well-formed values have one', () => {
    const v = blindIndexValue('x', 'v7', randomBytes(32));
    expect(v).toMatch(/^v7:[A-Za-z0-9+/]{43}=$/);
    expect(blindIndexVersion(v)).toBe('v7');
    for (const bad of [null, 42, '', 'v7:', `v0:${v.slice(3)}`, `${v.slice(0, -2)}==`, `${v}A`, `v7:${'A'.repeat(44)}`, v.replace('v7', 'V7')])
      expect(blindIndexVersion(bad)).toBeNull();
  });

  it('refuses a bad key, version, step or a lone surrogate, without quoting the plaintext', () => {
    expect(() => blindIndexKey(Buffer.alloc(16), 'users', 'email')).toThrow(/32 bytes/);
    expect(() => blindIndexKey(randomBytes(32), '', 'email')).toThrow(/non-empty/);
    expect(() => blindIndexValue('x', 'version1', randomBytes(32))).toThrow(/key version/);
    expect(() => new BlindIndexer('t', 's', ['upper' as NormalizeStep])).toThrow(/normalisation step/);
    const err = (() => {
      try {
        blindIndexValue('secret\uD800', 'v1', randomBytes(32));
      } catch (e) {
        return e as Error;
      }
      return null;
    })();
    expect(err?.message).toMatch(/surrogate/);
    expect(err?.message).not.toContain('secret');
  });

  it('docs/format.md has the section with the salt and the steps', () => {
    const at = formatDoc.indexOf('## Blind indexes');
    expect(at).toBeGreaterThan(0);
    const section = formatDoc.slice(at);
    expect(section).toContain(doc.salt);
    expect(section).toContain('test/vectors/blind-index.json');
    for (const step of ['trim', 'lowercase', 'nfc']) expect(section).toContain(`\`${step}\``);
  });
});

const ci = process.env.CI === 'true' || process.env.CI === '1';
const havePython = spawnSync('python3', ['-c', 'import cryptography'], { encoding: 'utf8' }).status === 0;
const script = fileURLToPath(new URL('../vectors/make_blind_index_vectors.py', import.meta.url));

describe.skipIf(!havePython && !ci)('blind indexes: interoperability with Python', () => {
  it('blind-index.json is what Python makes', () => {
    const run = spawnSync('python3', [script, '--check'], { encoding: 'utf8' });
    expect(run.stdout).toContain('blind-index.json: ok');
    expect(run.status).toBe(0);
  });

  it('Python computes the same index values as keyctl for random keys and text', () => {
    const samples = ['', 'Bob@Example.org ', 'ΣΊΣΥΦΟΣ', 'e\u0301\u0301', '\t x \n', 'Zoë 日本語 🚀', 'ǅungla'];
    const steps: NormalizeStep[][] = [[], ['trim'], ['lowercase'], ['nfc'], ['trim', 'lowercase', 'nfc'], ['nfc', 'lowercase']];
    const values = samples.flatMap((plaintext, i) =>
      steps.map((normalize, j) => {
        const key = randomBytes(32);
        const version = `v${1 + i + j}`;
        return {
          name: `${i}-${j}`,
          key_hex: key.toString('hex'),
          version,
          table: 'users',
          source: 'email',
          normalize,
          plaintext,
          value: new BlindIndexer('users', 'email', normalize).value(plaintext, version, key),
        };
      }),
    );
    const run = spawnSync('python3', [script, '--verify', '-'], { input: JSON.stringify({ values }), encoding: 'utf8' });
    expect(run.stdout).not.toContain('MISMATCH');
    expect(run.status).toBe(0);
    expect(run.stdout.trim().split('\n')).toHaveLength(values.length);
  });
});

describe('BlindIndexer', () => {
  it('derives the index key from the version key, not its name: two keyrings may both have a v2', () => {
    const indexer = new BlindIndexer('users', 'email');
    const [a, b] = [randomBytes(32), randomBytes(32)];
    expect(indexer.value('x', 'v2', a)).toBe(blindIndexValue('x', 'v2', blindIndexKey(a, 'users', 'email')));
    expect(indexer.value('x', 'v2', b)).toBe(blindIndexValue('x', 'v2', blindIndexKey(b, 'users', 'email')));
  });
});
