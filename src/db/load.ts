/** How busy the database is, for `reencrypt --max-load`. */
import type { Db } from './connect.js';

/** PostgreSQL: other active backends (pg_stat_activity); MySQL/MariaDB: Threads_running; SQLite: none. */
export function loadProbe(db: Db): (() => Promise<number>) | null {
  return db.adapter.loadProbe(db.knex);
}
