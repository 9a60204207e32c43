/**
 * What the network keystores (AWS Secrets Manager, Vault) share: bounded retries with backoff on
 * throttling, 5xx, timeouts and dropped connections, each retry logged; and the message for an
 * endpoint keyctl cannot reach. Messages never carry secret values: they are built from the
 * operation, the secret's name and the service's error code only.
 */
import type { Logger } from '../base/logger.js';
import { KeystoreError } from '../base/errors.js';
import { codeOf, withRetry } from '../base/retry.js';

export const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ECONNABORTED',
  'ERR_SOCKET_CONNECTION_TIMEOUT',
]);

/** Network failures worth another try (ENOTFOUND is not: a wrong host name stays wrong). */
const RETRY_NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'ECONNABORTED', 'ERR_SOCKET_CONNECTION_TIMEOUT']);

export function networkCode(err: unknown): string | null {
  const code = codeOf(err);
  if (NETWORK_CODES.has(code)) return code;
  const name = (err as { name?: string })?.name;
  if (name === 'TimeoutError' || name === 'RequestTimeout') return 'ETIMEDOUT';
  return null;
}

export interface RemoteRetry {
  attempts: number;
  log: Logger;
  /** The service's own "try again" answers: throttling, 5xx. */
  serviceRetryable: (err: unknown) => boolean;
  /** A short label for a failure in the retry log: an error code or HTTP status, never a body. */
  label: (err: unknown) => string;
  sleep?: (ms: number) => Promise<void>;
}

/** Run one keystore request with bounded retries; `what` names it in the log (never a value). */
export function withRemoteRetry<T>(what: string, fn: () => Promise<T>, r: RemoteRetry): Promise<T> {
  return withRetry(what, fn, {
    tries: r.attempts,
    baseDelayMs: 200,
    retryable: (err) => RETRY_NETWORK_CODES.has(networkCode(err) ?? '') || r.serviceRetryable(err),
    onRetry: ({ attempt, tries, delayMs, err }) =>
      r.log.warn(`keystore: ${what} failed (${networkCode(err) ?? r.label(err)}), retrying in ${delayMs} ms (attempt ${attempt + 1} of ${tries})`),
    ...(r.sleep ? { sleep: r.sleep } : {}),
  });
}

export function unreachable(service: string, where: string, code: string, attempts: number): KeystoreError {
  return new KeystoreError(
    `cannot reach ${service} at ${where}: ${code}${attempts > 1 ? ` (tried ${attempts} times)` : ''}`,
    code === 'ENOTFOUND'
      ? 'check the host name in the keystore settings and your DNS'
      : 'check the keystore address and region, the network path (proxy, firewall, VPC endpoint) and that the service is up; nothing was changed',
  );
}

/** An AWS SDK error's name (its exception type). */
export function awsErrorName(err: unknown): string {
  return String((err as { name?: unknown })?.name ?? 'Error');
}

export function awsHttpStatus(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
}

/**
 * The AWS failures both AWS keystores explain alike, after their own cases: credentials rejected
 * or missing, no region, retries used up, and any other refusal in the service's own words (which
 * name resources and parameters, never secret values).
 */
export function awsCommonError(
  err: unknown,
  o: { service: string; action: string; resource: string; maxAttempts: number; retryable: ReadonlySet<string> },
): KeystoreError {
  const name = awsErrorName(err);
  const message = String((err as { message?: unknown })?.message ?? '');
  switch (name) {
    case 'UnrecognizedClientException':
    case 'InvalidSignatureException':
    case 'ExpiredTokenException':
    case 'InvalidClientTokenId':
    case 'IncompleteSignature':
      return new KeystoreError(
        `${name}: AWS rejected keyctl's credentials for ${o.action}`,
        'check AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN, or refresh the session (e.g. aws sso login)',
      );
    case 'CredentialsProviderError':
      return new KeystoreError(
        'no AWS credentials found (environment, shared config/profile, SSO, web identity, instance role)',
        'set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run where a role is attached; keyctl never reads credentials from its own config',
      );
  }
  if (/Region is missing/i.test(message))
    return new KeystoreError('no AWS region is set for the keystore', 'set keystore.region in keyctl.yaml, or AWS_REGION');
  const op = o.action.split(':')[1] ?? o.action;
  if (o.retryable.has(name) || (awsHttpStatus(err) ?? 0) >= 500) {
    return new KeystoreError(
      `${name}: ${o.service} did not complete ${op} on ${o.resource} after ${o.maxAttempts} tries`,
      'wait a minute and run the command again (it resumes where it stopped); raise keystore.maxAttempts if this keeps happening',
    );
  }
  return new KeystoreError(`${name}: ${o.service} refused ${op} on ${o.resource}: ${message}`);
}
