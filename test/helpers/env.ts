/** Where the test suite finds its database servers (override for other machines or CI services). */
export const PG_ADMIN_URL = process.env.KEYCTL_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const MYSQL_ADMIN_URL = process.env.KEYCTL_TEST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test';

export type TestDialect = 'sqlite' | 'pg' | 'mysql';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Which database servers answered when the run started. */
    available: Record<TestDialect, boolean>;
  }
}
