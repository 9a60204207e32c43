/**
 * Retrying a batch after transient database failures — deadlock, lock-wait timeout, a dropped
 * connection — with exponential backoff and a bounded number of tries. Each batch is one
 * transaction, so a retried batch was either fully applied or not at all; re-applying it is
 * harmless because the compare-and-set skips values already rewritten.
 */
const RETRYABLE_CODES = new Set([
  // PostgreSQL: deadlock, serialization failure, lock not available, connection failures, admin shutdown
  '40P01', '40001', '55P03', '08000', '08003', '08006', '57P01', '57P02', '57P03',
  // MySQL / MariaDB
  'ER_LOCK_DEADLOCK', 'ER_LOCK_WAIT_TIMEOUT', 'PROTOCOL_CONNECTION_LOST', 'ER_CON_COUNT_ERROR',
  // SQLite
  'SQLITE_BUSY', 'SQLITE_LOCKED',
  // sockets
  'ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT',
]);

export function codeOf(err: unknown): string {
  const e = err as { code?: unknown; cause?: { code?: unknown } };
  return String(e?.cause?.code ?? e?.code ?? '');
}

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
  /** Which failures are worth another try (default: the database and socket ones above). */
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
