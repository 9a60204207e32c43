/**
 * Which key versions a backup holds, from the backups' own audit rows (no decryption, no OpenPGP
 * loaded): dual-key asks it before a new key may become primary.
 */
import path from 'node:path';
import { checkChecksum } from '../backup/files.js';
import { latestAuditOf } from '../rotation/store.js';
import type { CoreContext } from './context.js';

/**
 * The newest backup, written since `since`, that holds `version` and whose file is still there with
 * an intact checksum (from the backup's own audit row), or null. Null as well when no backup is
 * configured (`configured: false`).
 */
export async function backupHolding(ctx: CoreContext, version: string, since: Date): Promise<{ configured: boolean; file: string | null }> {
  if (ctx.config.backup.recipients.length === 0) return { configured: false, file: null };
  const rows = (await latestAuditOf(ctx.db, ctx.config.keyring, 'backup')).filter((r) => r.createdAt >= since);
  for (const r of rows) {
    const versions = Array.isArray(r.details?.versions) ? r.details.versions : [];
    if (!versions.includes(version) || typeof r.details?.file !== 'string' || typeof r.details?.dir !== 'string') continue;
    const file = path.join(r.details.dir, r.details.file);
    if ((await checkChecksum(file)).ok) return { configured: true, file };
  }
  return { configured: true, file: null };
}
