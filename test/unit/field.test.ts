/** What FieldCodec (src/crypto/field.ts) takes each value for, per target shape. */
import { describe, expect, it } from 'vitest';
import { AesGcmV1Codec } from '../../src/crypto/codec.js';
import { FernetCodec } from '../../src/crypto/fernet.js';
import { FieldCodec, type FieldSpec } from '../../src/crypto/field.js';
import { generateKey } from '../../src/crypto/keys.js';

const spec = (over: Partial<FieldSpec>): FieldSpec => ({
  fernetVersions: [],
  fernetPrefix: '',
  plaintext: false,
  context: null,
  unboundVersions: [],
  table: 't',
  ...over,
});
const key = generateKey();

describe('FieldCodec', () => {
  it('tells AES-GCM values, Fernet tokens, plaintext and damaged values apart', () => {
    const prefixed = new FieldCodec(spec({ fernetVersions: ['v1'], fernetPrefix: 'FERNET_V1:', plaintext: true }));
    const token = new FernetCodec().encrypt('x', 'v1', key);
    expect(prefixed.kind(`FERNET_V1:${token}`)).toBe('fernet');
    // A bare token where a prefix is configured claims to be a token: damaged, never plaintext.
    expect(prefixed.kind(token)).toBe('damaged');
    expect(prefixed.kind('FERNET_V1:gAAAAAbroken')).toBe('damaged');
    expect(prefixed.kind(new AesGcmV1Codec().encrypt('x', 'v2', key))).toBe('aes-gcm');
    expect(prefixed.kind('v2:AAAAdamaged')).toBe('damaged');
    expect(prefixed.kind('call me back')).toBe('plaintext');
    expect(prefixed.kind(null)).toBe('null');
    expect(prefixed.kind(42)).toBe('damaged');
    expect(new RegExp(prefixed.fernetClaimsPattern!).test(token)).toBe(true);
    // Without plaintext: encrypt, text is damaged.
    expect(new FieldCodec(spec({})).kind('call me back')).toBe('damaged');
  });

  it('keeps a token time a date can hold, and writes a fresh one past year 9999 instead of failing', () => {
    const f = new FieldCodec(spec({ fernetVersions: 'all' }));
    const fernet = new FernetCodec();
    const at = (v: string) => Number(Buffer.from(v, 'base64url').readBigUInt64BE(1));
    expect(at(f.seal('x', 'v1', key, 1_600_000_000))).toBe(1_600_000_000);
    const far = f.seal('x', 'v1', key, 2 ** 50);
    expect(Math.abs(at(far) - Date.now() / 1000)).toBeLessThan(60);
    expect(fernet.decrypt(far, key)).toBe('x');
  });
});
