/**
 * Self-test of the Secrets Manager fixture: the real AWS SDK client against the fake, checking
 * a handful of documented behaviours so tests built on it can trust it.
 */
import {
  CreateSecretCommand,
  DeleteSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  ListSecretsCommand,
  PutSecretValueCommand,
  RestoreSecretCommand,
  SecretsManagerClient,
  UpdateSecretVersionStageCommand,
} from '@aws-sdk/client-secrets-manager';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startFakeSecretsManager, type FakeSecretsManager } from '../fixtures/aws-secrets-manager.js';

describe('fake AWS Secrets Manager', () => {
  let sm: FakeSecretsManager;
  let client: SecretsManagerClient;

  beforeEach(async () => {
    sm = await startFakeSecretsManager();
    client = new SecretsManagerClient({
      region: sm.region,
      endpoint: sm.endpoint,
      credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'test' },
    });
  });
  afterEach(async () => {
    client.destroy();
    await sm.close();
  });

  it('creates a secret and reads it back as AWSCURRENT', async () => {
    const created = await client.send(new CreateSecretCommand({ Name: 'app/db', SecretString: 'v1', Tags: [{ Key: 'team', Value: 'core' }] }));
    expect(created.ARN).toMatch(/^arn:aws:secretsmanager:us-east-1:\d{12}:secret:app\/db-[A-Za-z0-9]{6}$/);
    const got = await client.send(new GetSecretValueCommand({ SecretId: created.ARN }));
    expect(got).toMatchObject({ Name: 'app/db', SecretString: 'v1', VersionId: created.VersionId, VersionStages: ['AWSCURRENT'] });
    expect(got.CreatedDate).toBeInstanceOf(Date);
    expect(sm.calls.map((c) => c.op)).toEqual(['CreateSecret', 'GetSecretValue']);
    expect(JSON.stringify(sm.calls)).not.toContain('v1');
  });

  it('moving AWSCURRENT onto an AWSPENDING version leaves AWSPREVIOUS on the old one', async () => {
    sm.seed('k', 'old');
    const oldId = sm.stagesOf('k').AWSCURRENT!;
    const put = await client.send(new PutSecretValueCommand({ SecretId: 'k', SecretString: 'new', VersionStages: ['AWSPENDING'] }));
    expect(put.VersionStages).toEqual(['AWSPENDING']);
    expect(sm.valueAt('k')).toBe('old');
    await client.send(
      new UpdateSecretVersionStageCommand({ SecretId: 'k', VersionStage: 'AWSCURRENT', MoveToVersionId: put.VersionId, RemoveFromVersionId: oldId }),
    );
    expect(sm.stagesOf('k')).toEqual({ AWSCURRENT: put.VersionId, AWSPENDING: put.VersionId, AWSPREVIOUS: oldId });
    expect(sm.valueAt('k')).toBe('new');
    expect(sm.valueAt('k', 'AWSPREVIOUS')).toBe('old');
    const described = await client.send(new DescribeSecretCommand({ SecretId: 'k' }));
    expect(described.VersionIdsToStages).toEqual({ [oldId]: ['AWSPREVIOUS'], [put.VersionId!]: ['AWSPENDING', 'AWSCURRENT'] });
  });

  it('rejects a RemoveFromVersionId that does not hold the label', async () => {
    sm.seed('k', 'old');
    const put = await client.send(new PutSecretValueCommand({ SecretId: 'k', SecretString: 'new', VersionStages: ['AWSPENDING'] }));
    const move = (remove?: string) =>
      client.send(
        new UpdateSecretVersionStageCommand({ SecretId: 'k', VersionStage: 'AWSCURRENT', MoveToVersionId: put.VersionId, RemoveFromVersionId: remove }),
      );
    await expect(move(put.VersionId)).rejects.toMatchObject({ name: 'InvalidParameterException' });
    await expect(move()).rejects.toMatchObject({ name: 'InvalidParameterException' });
    expect(sm.valueAt('k')).toBe('old');
  });

  it('surfaces ResourceNotFoundException by name', async () => {
    const err = (await client.send(new GetSecretValueCommand({ SecretId: 'missing' })).then(
      () => undefined,
      (e: unknown) => e,
    )) as Error & { $metadata: { httpStatusCode?: number } };
    expect(err).toBeInstanceOf(Error);
    expect(err.name).toBe('ResourceNotFoundException');
    expect(err.message).toBe("Secrets Manager can't find the specified secret.");
    expect(err.$metadata.httpStatusCode).toBe(400);
  });

  it('denies an operation with the AWS AccessDenied message', async () => {
    sm.seed('k', 'v');
    sm.deny('PutSecretValue');
    await expect(client.send(new PutSecretValueCommand({ SecretId: 'k', SecretString: 'x' }))).rejects.toMatchObject({
      name: 'AccessDeniedException',
      message:
        'User: arn:aws:iam::123456789012:user/keyctl-test is not authorized to perform: secretsmanager:PutSecretValue on resource: k because no identity-based policy allows the secretsmanager:PutSecretValue action',
    });
    expect(sm.calls.filter((c) => c.op === 'PutSecretValue')).toHaveLength(1); // not retried
    expect(sm.valueAt('k')).toBe('v');
  });

  it('a single throttle is retried by the SDK with default settings', async () => {
    sm.seed('k', 'v');
    sm.failNext('GetSecretValue', 1, 'throttle');
    const got = await client.send(new GetSecretValueCommand({ SecretId: 'k' }));
    expect(got.SecretString).toBe('v');
    expect(got.$metadata.attempts).toBe(2);
    expect(sm.calls.map((c) => c.op)).toEqual(['GetSecretValue', 'GetSecretValue']);
  });

  it('a deleted secret is hidden from ListSecrets until restored', async () => {
    sm.seed('a', '1');
    sm.seed('b', '2');
    const del = await client.send(new DeleteSecretCommand({ SecretId: 'a', RecoveryWindowInDays: 7 }));
    expect(del.DeletionDate!.getTime() - Date.now()).toBeGreaterThan(6.9 * 86_400_000);
    const names = async (include = false) => (await client.send(new ListSecretsCommand({ IncludePlannedDeletion: include }))).SecretList!.map((s) => s.Name);
    expect(await names()).toEqual(['b']);
    expect(await names(true)).toEqual(['a', 'b']);
    await expect(client.send(new GetSecretValueCommand({ SecretId: 'a' }))).rejects.toMatchObject({ name: 'InvalidRequestException' });
    await client.send(new RestoreSecretCommand({ SecretId: 'a' }));
    expect(await names()).toEqual(['a', 'b']);
    expect((await client.send(new GetSecretValueCommand({ SecretId: 'a' }))).SecretString).toBe('1');
  });

  it('with a listing lag, ListSecrets shows each secret as it was that long ago; DescribeSecret shows it as it is', async () => {
    sm.seed('old', '1');
    await new Promise((r) => setTimeout(r, 60));
    sm.setListingLag(40);
    await client.send(new CreateSecretCommand({ Name: 'new', SecretString: '2' }));
    await client.send(new DeleteSecretCommand({ SecretId: 'old', RecoveryWindowInDays: 7 }));
    const listed = async () =>
      (await client.send(new ListSecretsCommand({ IncludePlannedDeletion: true }))).SecretList!.map((s) => `${s.Name}${s.DeletedDate ? ' (deleted)' : ''}`);
    expect(await listed()).toEqual(['old']);
    expect((await client.send(new DescribeSecretCommand({ SecretId: 'old' }))).DeletedDate).toBeInstanceOf(Date);
    expect((await client.send(new DescribeSecretCommand({ SecretId: 'new' }))).Name).toBe('new');
    await new Promise((r) => setTimeout(r, 60));
    expect(await listed()).toEqual(['old (deleted)', 'new']);
    // Without a lag the listing is the current state again.
    await client.send(new RestoreSecretCommand({ SecretId: 'old' }));
    sm.setListingLag(0);
    expect(await listed()).toEqual(['old', 'new']);
  });

  it('a lost staging-label race can answer another error type', async () => {
    sm.seed('k', 'old');
    const oldId = sm.stagesOf('k').AWSCURRENT!;
    const a = await client.send(new PutSecretValueCommand({ SecretId: 'k', SecretString: 'a', VersionStages: ['AWSPENDING'] }));
    const b = await client.send(new PutSecretValueCommand({ SecretId: 'k', SecretString: 'b', VersionStages: ['AWSPENDING'] }));
    const move = (to: string) =>
      client.send(new UpdateSecretVersionStageCommand({ SecretId: 'k', VersionStage: 'AWSCURRENT', MoveToVersionId: to, RemoveFromVersionId: oldId }));
    await move(a.VersionId!);
    sm.setStageConflict({ errorType: 'ValidationException' });
    await expect(move(b.VersionId!)).rejects.toMatchObject({ name: 'ValidationException' });
    expect(sm.valueAt('k')).toBe('a');
    expect(sm.stagesOf('k').AWSPREVIOUS).toBe(oldId);
  });
});
