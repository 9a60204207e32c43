/**
 * The key-encryption keys of an envelope keystore (aws-kms, vault-transit), as `status` and
 * `metrics` report them: which KEK wraps each stored version, and each KEK's state and the key
 * service's latency (one DescribeKey, or one Transit key read, per KEK). Empty for the other
 * providers, whose keys are not wrapped.
 */
import { EnvelopeKeystore } from '../keystore/envelope.js';
import type { Keystore } from '../keystore/types.js';
import type { KekHealth } from '../keystore/wrap.js';

export interface KekReport extends KekHealth {
  /** The stored versions this KEK wraps (published and archived), in version order. */
  versions: string[];
}

export interface KekOverview {
  /** version → the KEK that wraps it. */
  byVersion: Map<string, string>;
  keks: KekReport[];
}

export async function kekOverview(keystore: Keystore): Promise<KekOverview | null> {
  if (!(keystore instanceof EnvelopeKeystore)) return null;
  const byVersion = new Map<string, string>();
  for (const place of ['published', 'archive'] as const) {
    for (const [version, e] of (await keystore.readWrapped(place))?.doc.keys ?? []) byVersion.set(version, e.kek);
  }
  const keks = [...new Set(byVersion.values())].sort();
  const health = await Promise.all(keks.map((k) => keystore.wrapper.health(k)));
  return {
    byVersion,
    keks: health.map((h) => ({
      ...h,
      versions: [...byVersion].filter(([, k]) => k === h.kek).map(([v]) => v),
    })),
  };
}

/** A KEK that cannot decrypt what it wraps (disabled, pending deletion, gone, below min_decryption_version). */
export function kekUnusable(k: KekHealth): boolean {
  return k.state === 'disabled' || k.state === 'pending-deletion' || k.state === 'missing';
}
