/**
 * Retrying a batch after transient database failures — deadlock, lock-wait timeout, a dropped
 * connection — with exponential backoff and a bounded number of tries. Each batch is one
 * transaction, so a retried batch was either fully applied or not at all; re-applying it is
 * harmless because the compare-and-set skips values already rewritten.
 */
/** Socket failures; each database dialect adds its own codes (src/db/dialects: `isRetryable`). */
const RETRYABLE_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT']);

export function codeOf(err: unknown): string {
  const e = err as { code?: unknown; cause?: { code?: unknown } };
  return String(e?.cause?.code ?? e?.code ?? '');
}

/** A dropped or refused connection: worth another try whatever is on the other end. */
export function isRetryable(err: unknown): boolean {
  const code = codeOf(err);
  if (RETRYABLE_CODES.has(code)) return true;
  const message = String((err as { message?: unknown })?.message ?? '');
  return /Connection terminated|connection is closed|Timeout acquiring a connection/i.test(message);
}

export interface RetryOptions {
  tries: number;
  baseDelayMs: number;
  onRetry: (info: { attempt: number; tries: number; delayMs: number; code: string; what: string; err: unknown }) => void;
  sleep?: (ms: number) => Promise<void>;
  /** Which failures are worth another try (default: the socket ones above; a database passes its dialect's). */
  retryable?: (err: unknown) => boolean;
}

export async function withRetry<T>(what: string, fn: () => Promise<T>, o: RetryOptions): Promise<T> {
  const sleep = o.sleep ?? ((ms: number) => new Promise((r) => setTimeout(r, ms)));
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (attempt >= o.tries || !(o.retryable ?? isRetryable)(err)) throw err;
      const delayMs = Math.round(o.baseDelayMs * 2 ** (attempt - 1) * (0.75 + Math.random() * 0.5));
      o.onRetry({ attempt, tries: o.tries, delayMs, code: codeOf(err) || 'connection', what, err });
      await sleep(delayMs);
    }
  }
}
