/**
 * Key material helpers: generation, strict base64 parsing, fingerprints and version names.
 * Nothing here ever puts key bytes into an error message.
 */
import { createHmac, randomBytes } from 'node:crypto';

export const KEY_BYTES = 32;
const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const VERSION_RE = /^v([1-9][0-9]*)$/;

export function generateKey(): Buffer {
  return randomBytes(KEY_BYTES);
}

export type KeyParseProblem = { ok: false; problem: string };

/**
 * Parse base64 of exactly 32 bytes. Returns a problem description that never quotes the input,
 * so callers can put it in an error without leaking (part of) a key.
 */
export function parseKeyBase64(text: string): { ok: true; key: Buffer } | KeyParseProblem {
  const trimmed = text.trim();
  if (trimmed.length === 0) return { ok: false, problem: 'is empty' };
  if (!BASE64_RE.test(trimmed)) {
    return { ok: false, problem: `is not standard base64 (${trimmed.length} characters, expected 44 ending in "=")` };
  }
  const key = Buffer.from(trimmed, 'base64');
  if (key.length !== KEY_BYTES) {
    return { ok: false, problem: `decodes to ${key.length} bytes, expected ${KEY_BYTES}` };
  }
  return { ok: true, key };
}

/** Short non-reversible identifier of a key: first 16 hex chars of HMAC-SHA256(key, label). */
export function fingerprint(key: Buffer): string {
  return createHmac('sha256', key).update('keyctl fingerprint v1').digest('hex').slice(0, 16);
}

export function isVersionName(name: string): boolean {
  return VERSION_RE.test(name);
}

export function versionNumber(name: string): number {
  const m = VERSION_RE.exec(name);
  if (!m) throw new RangeError(`"${name}" is not a key version name (expected v1, v2, …)`);
  return Number(m[1]);
}

export function versionName(n: number): string {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`invalid key version number ${n}`);
  return `v${n}`;
}

export function compareVersions(a: string, b: string): number {
  return versionNumber(a) - versionNumber(b);
}

/** Accepts "v2" or "2" (as in KEYCTL_PRIMARY) and returns "v2", or undefined when invalid. */
export function normaliseVersion(text: string): string | undefined {
  const t = text.trim();
  if (VERSION_RE.test(t)) return t;
  if (/^[1-9][0-9]*$/.test(t)) return `v${t}`;
  return undefined;
}
