/**
 * Self-test of the local KMS (test/fixtures/aws-kms.ts), driven by the real @aws-sdk/client-kms.
 * The envelope scenario also runs against the third-party moto server (`python3 -m moto.server`)
 * where the machine has it, as an independent check that the fixture answers as a second
 * implementation of the protocol does. Without moto it is skipped with a notice; .ci/run sets
 * KEYCTL_TEST_MOTO=required when moto is installed, and then a moto that does not start fails.
 */
import {
  CancelKeyDeletionCommand,
  CreateAliasCommand,
  CreateKeyCommand,
  DecryptCommand,
  DescribeKeyCommand,
  DisableKeyCommand,
  EnableKeyCommand,
  EncryptCommand,
  GenerateDataKeyCommand,
  GenerateDataKeyWithoutPlaintextCommand,
  KMSClient,
  ReEncryptCommand,
  ScheduleKeyDeletionCommand,
} from '@aws-sdk/client-kms';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { startFakeKms, type FakeKms } from '../fixtures/aws-kms.js';
import { motoEnabled, motoNotice, startMoto } from '../helpers/moto.js';

const started: FakeKms[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((k) => k.close()));
});

async function fixture(): Promise<FakeKms> {
  const k = await startFakeKms();
  started.push(k);
  return k;
}

function client(endpoint: string, extra: { maxAttempts?: number } = {}): KMSClient {
  return new KMSClient({ endpoint, region: 'us-east-1', credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'test-secret' }, ...extra });
}

/** The error name and message a call rejects with. */
async function failure(p: Promise<unknown>): Promise<{ name: string; message: string }> {
  try {
    await p;
  } catch (err) {
    const e = err as Error;
    return { name: e.name, message: e.message };
  }
  throw new Error('expected the call to fail');
}

const ctx = (version: string) => ({ keyring: 'default', version, tenant: 't01' });

/** What every faithful KMS does: data keys bound to their encryption context, ReEncrypt under another key, aliases. */
async function envelopeScenario(kms: KMSClient): Promise<void> {
  const a = (await kms.send(new CreateKeyCommand({ Description: 'keyctl KEK a' }))).KeyMetadata!;
  const b = (await kms.send(new CreateKeyCommand({ Description: 'keyctl KEK b' }))).KeyMetadata!;
  expect(a).toMatchObject({ KeyState: 'Enabled', Enabled: true, KeySpec: 'SYMMETRIC_DEFAULT' });
  await kms.send(new CreateAliasCommand({ AliasName: 'alias/keyctl-test', TargetKeyId: a.KeyId }));
  expect((await kms.send(new DescribeKeyCommand({ KeyId: 'alias/keyctl-test' }))).KeyMetadata?.KeyId).toBe(a.KeyId);

  const dk = await kms.send(new GenerateDataKeyCommand({ KeyId: 'alias/keyctl-test', KeySpec: 'AES_256', EncryptionContext: ctx('v2') }));
  expect(dk.Plaintext).toHaveLength(32);
  expect(dk.KeyId).toBe(a.Arn);
  const back = await kms.send(new DecryptCommand({ CiphertextBlob: dk.CiphertextBlob, EncryptionContext: ctx('v2') }));
  expect(Buffer.from(back.Plaintext!).equals(Buffer.from(dk.Plaintext!))).toBe(true);
  expect(back.KeyId).toBe(a.Arn);
  expect(await failure(kms.send(new DecryptCommand({ CiphertextBlob: dk.CiphertextBlob, EncryptionContext: ctx('v3') })))).toMatchObject({
    name: 'InvalidCiphertextException',
  });
  expect(await failure(kms.send(new DecryptCommand({ CiphertextBlob: dk.CiphertextBlob })))).toMatchObject({ name: 'InvalidCiphertextException' });

  const moved = await kms.send(
    new ReEncryptCommand({
      CiphertextBlob: dk.CiphertextBlob,
      SourceEncryptionContext: ctx('v2'),
      DestinationKeyId: b.KeyId,
      DestinationEncryptionContext: ctx('v2'),
    }),
  );
  expect(moved).toMatchObject({ SourceKeyId: a.Arn, KeyId: b.Arn });
  const again = await kms.send(new DecryptCommand({ CiphertextBlob: moved.CiphertextBlob, EncryptionContext: ctx('v2') }));
  expect(Buffer.from(again.Plaintext!).equals(Buffer.from(dk.Plaintext!))).toBe(true);
  expect(again.KeyId).toBe(b.Arn);

  const wrapped = await kms.send(new GenerateDataKeyWithoutPlaintextCommand({ KeyId: b.Arn, KeySpec: 'AES_256', EncryptionContext: ctx('v3') }));
  expect('Plaintext' in wrapped && wrapped.Plaintext !== undefined).toBe(false);
  expect((await kms.send(new DecryptCommand({ CiphertextBlob: wrapped.CiphertextBlob, EncryptionContext: ctx('v3') }))).Plaintext).toHaveLength(32);
  expect(await failure(kms.send(new DescribeKeyCommand({ KeyId: 'alias/nope' })))).toMatchObject({ name: 'NotFoundException' });
}

describe('local KMS through @aws-sdk/client-kms', () => {
  it('binds data keys to their encryption context, re-encrypts under another key, resolves aliases', async () => {
    const fake = await fixture();
    await envelopeScenario(client(fake.endpoint));
    expect(fake.calls.map((c) => c.op)).toContain('ReEncrypt');
    expect(fake.calls.every((c) => Object.keys(c).every((k) => k === 'op' || k === 'keyId'))).toBe(true);
  });

  it('answers DisabledException and KMSInvalidStateException for a disabled key and one pending deletion, also on Decrypt', async () => {
    const fake = await fixture();
    const kms = client(fake.endpoint);
    const key = (await kms.send(new CreateKeyCommand({}))).KeyMetadata!;
    const ct = (await kms.send(new EncryptCommand({ KeyId: key.KeyId, Plaintext: Buffer.from('k'), EncryptionContext: ctx('v1') }))).CiphertextBlob;
    await kms.send(new DisableKeyCommand({ KeyId: key.KeyId }));
    expect(fake.key(key.KeyId!)?.state).toBe('Disabled');
    expect(await failure(kms.send(new DecryptCommand({ CiphertextBlob: ct, EncryptionContext: ctx('v1') })))).toEqual({
      name: 'DisabledException',
      message: expect.stringContaining(key.Arn!),
    });
    expect(await failure(kms.send(new GenerateDataKeyCommand({ KeyId: key.KeyId, KeySpec: 'AES_256' })))).toMatchObject({ name: 'DisabledException' });
    await kms.send(new EnableKeyCommand({ KeyId: key.KeyId }));
    const scheduled = await kms.send(new ScheduleKeyDeletionCommand({ KeyId: key.KeyId, PendingWindowInDays: 7 }));
    expect(scheduled).toMatchObject({ KeyState: 'PendingDeletion', PendingWindowInDays: 7 });
    expect((await kms.send(new DescribeKeyCommand({ KeyId: key.KeyId }))).KeyMetadata).toMatchObject({ KeyState: 'PendingDeletion', Enabled: false });
    expect(await failure(kms.send(new DecryptCommand({ CiphertextBlob: ct, EncryptionContext: ctx('v1') })))).toEqual({
      name: 'KMSInvalidStateException',
      message: expect.stringContaining(key.Arn!),
    });
    await kms.send(new CancelKeyDeletionCommand({ KeyId: key.KeyId }));
    expect(fake.key(key.KeyId!)?.state).toBe('Disabled');
    await kms.send(new EnableKeyCommand({ KeyId: key.KeyId }));
    expect((await kms.send(new DecryptCommand({ CiphertextBlob: ct, EncryptionContext: ctx('v1') }))).Plaintext).toEqual(new Uint8Array(Buffer.from('k')));
  });

  it('names the wrong key, the missing key, a denied action, and throttles (the SDK retries)', async () => {
    const fake = await fixture();
    const kms = client(fake.endpoint);
    const a = (await kms.send(new CreateKeyCommand({}))).KeyMetadata!;
    const b = (await kms.send(new CreateKeyCommand({}))).KeyMetadata!;
    const ct = (await kms.send(new EncryptCommand({ KeyId: a.KeyId, Plaintext: Buffer.from('k') }))).CiphertextBlob;
    expect(await failure(kms.send(new DecryptCommand({ CiphertextBlob: ct, KeyId: b.KeyId })))).toMatchObject({ name: 'IncorrectKeyException' });
    expect(await failure(kms.send(new DescribeKeyCommand({ KeyId: '00000000-0000-0000-0000-000000000000' })))).toEqual({
      name: 'NotFoundException',
      message: "Key 'arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000' does not exist",
    });
    expect(await failure(kms.send(new DecryptCommand({ CiphertextBlob: Buffer.from('not a blob') })))).toMatchObject({ name: 'InvalidCiphertextException' });

    fake.failNext('Decrypt', 1, 'throttle');
    expect((await kms.send(new DecryptCommand({ CiphertextBlob: ct }))).Plaintext).toHaveLength(1);
    fake.failNext('Decrypt', 1, 'throttle');
    expect(await failure(client(fake.endpoint, { maxAttempts: 1 }).send(new DecryptCommand({ CiphertextBlob: ct })))).toMatchObject({
      name: 'ThrottlingException',
    });

    fake.deny('Decrypt');
    expect(await failure(kms.send(new DecryptCommand({ CiphertextBlob: ct })))).toMatchObject({
      name: 'AccessDeniedException',
      message: expect.stringContaining('is not authorized to perform: kms:Decrypt'),
    });
  });
});

motoNotice('the KMS envelope scenario');

describe.skipIf(!motoEnabled)('the same envelope scenario against moto (python3 -m moto.server)', () => {
  let moto: Awaited<ReturnType<typeof startMoto>> | undefined;
  afterAll(() => {
    moto?.stop();
  });

  it('behaves as the local KMS does', { timeout: 60_000 }, async () => {
    moto = await startMoto();
    await envelopeScenario(client(moto.endpoint));
  });
});
