/**
 * The guards of `keyctl rewrap` (src/core/rewrap.ts) on the local KMS: a rewrapped blob that does
 * not unwrap to the same key never replaces the old one, and a blob changed by someone else while
 * it was being rewrapped is left as they wrote it (compare-and-set on each blob).
 */
import path from 'node:path';
import { CreateAliasCommand, CreateKeyCommand, KMSClient, UpdateAliasCommand } from '@aws-sdk/client-kms';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/context.js';
import { rewrap } from '../../src/core/rewrap.js';
import { generateKey } from '../../src/crypto/keys.js';
import { EnvelopeKeystore } from '../../src/keystore/envelope.js';
import { KmsWrapper } from '../../src/keystore/kms.js';
import type { WrapContext, WrappedKey } from '../../src/keystore/wrap.js';
import { startFakeKms, type FakeKms } from '../fixtures/aws-kms.js';
import { openTestContext } from '../helpers/context.js';
import { perTestDatabase } from '../helpers/databases.js';
import { AWS_ENV } from '../helpers/keystores.js';

const REGION = 'eu-west-1';
let kms: FakeKms | undefined;
const savedEnv = { ...process.env };
afterEach(async () => {
  await kms?.close();
  kms = undefined;
  for (const k of Object.keys(AWS_ENV)) if (savedEnv[k] === undefined) delete process.env[k];
  Object.assign(process.env, savedEnv);
});

async function setup(dir: string, make: (o: ConstructorParameters<typeof KmsWrapper>[0]) => KmsWrapper) {
  kms = await startFakeKms({ region: REGION });
  Object.assign(process.env, AWS_ENV);
  const client = new KMSClient({ endpoint: kms.endpoint, region: REGION });
  const a = (await client.send(new CreateKeyCommand({}))).KeyMetadata!;
  await client.send(new CreateAliasCommand({ AliasName: 'alias/kek', TargetKeyId: a.KeyId }));
  const wrapper = make({ keyId: 'alias/kek', region: REGION, endpoint: kms.endpoint, timeoutSeconds: 2, maxAttempts: 1, log: silentLogger });
  const ks = new EnvelopeKeystore({ file: path.join(dir, 'keyring.wrapped.json'), wrapper, log: silentLogger });
  const keys = new Map([
    ['v1', generateKey()],
    ['v2', generateKey()],
  ]);
  await ks.write({ keyring: 'default', primary: 'v2', keys }, null, 'create');
  const b = (await client.send(new CreateKeyCommand({}))).KeyMetadata!;
  await client.send(new UpdateAliasCommand({ AliasName: 'alias/kek', TargetKeyId: b.KeyId }));
  return { ks, keys, oldArn: a.Arn!, newArn: b.Arn! };
}

describe('rewrap guards', () => {
  const t = perTestDatabase('sqlite');

  it('keeps the old blob when the rewrapped one unwraps to another key, and audits the failure', async () => {
    const { ks, oldArn } = await setup(t.db.dir, (o) => {
      // A key service that answers ReEncrypt with a blob of some other key.
      const w = new KmsWrapper(o);
      w.rewrap = async (_w: WrappedKey, ctx: WrapContext) => w.wrap(generateKey(), ctx);
      return w;
    });
    const before = await ks.readWrapped('published');
    const ctx = await openTestContext(t.db, { keystore: ks });
    t.cleanup(() => ctx.db.close());
    await expect(rewrap(ctx)).rejects.toThrow(/unwraps to another key .* nothing was replaced/);
    const after = await ks.readWrapped('published');
    expect(after!.doc.keys).toEqual(before!.doc.keys);
    expect([...after!.doc.keys.values()].map((e) => e.kek)).toEqual([oldArn, oldArn]);
    const rows = await ctx.db.knex('rotation_audit').where({ action: 'rewrap' }).select('outcome');
    expect(rows.map((r: { outcome: string }) => r.outcome)).toEqual(['failed']);
  });

  it('leaves a blob someone else replaced meanwhile as they wrote it', async () => {
    let other: EnvelopeKeystore | undefined;
    const { ks, keys, newArn } = await setup(t.db.dir, (o) => {
      const w = new KmsWrapper(o);
      const real = w.rewrap.bind(w);
      w.rewrap = async (wrapped: WrappedKey, ctx: WrapContext, to?: string) => {
        const out = await real(wrapped, ctx, to);
        // Another keyctl re-wraps v1 (e.g. a second rewrap) between this run's read and its write.
        if (ctx.version === 'v1' && other) {
          const stored = (await other.readWrapped('published'))!.doc.keys.get('v1')!;
          expect(await other.replaceWrapped('published', 'v1', stored, await w.wrap(keys.get('v1')!, ctx))).toBe(true);
        }
        return out;
      };
      return w;
    });
    other = new EnvelopeKeystore({ file: ks.file, wrapper: ks.wrapper, log: silentLogger });
    const ctx = await openTestContext(t.db, { keystore: ks });
    t.cleanup(() => ctx.db.close());
    const r = await rewrap(ctx);
    expect(r.entries.map((e) => [e.version, e.state])).toEqual([
      ['v1', 'changed-meanwhile'],
      ['v2', 'rewrapped'],
    ]);
    // The concurrent writer's v1 blob is what is stored, and it still gives the same key.
    const now = (await ks.readWrapped('published'))!.doc.keys;
    expect(now.get('v2')!.kek).toBe(newArn);
    const fresh = new EnvelopeKeystore({ file: ks.file, wrapper: ks.wrapper, log: silentLogger });
    expect((await fresh.read())!.doc.keys.get('v1')).toEqual(keys.get('v1'));
    expect((await rewrap(ctx)).entries.map((e) => e.state)).toEqual(['current', 'current']);
  });
});
