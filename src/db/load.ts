/** How busy the database is, for `reencrypt --max-load`. */
import type { Db } from './connect.js';

/** PostgreSQL: other active backends (pg_stat_activity); MySQL/MariaDB: Threads_running. */
export function loadProbe(db: Db): (() => Promise<number>) | null {
  switch (db.adapter.dialect) {
    case 'pg':
      return async () => {
        const r = await db.knex.raw(`SELECT count(*) AS n FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid()`);
        return Number((r.rows as Array<{ n: unknown }>)[0]?.n ?? 0);
      };
    case 'mysql':
      return async () => {
        const [rows] = (await db.knex.raw(`SHOW GLOBAL STATUS LIKE 'Threads_running'`)) as [Array<{ Value: unknown }>];
        // Our own connection's statement counts as one running thread.
        return Math.max(0, Number(rows[0]?.Value ?? 0) - 1);
      };
    case 'sqlite':
      return null;
  }
}
