/** How long a retired key's material is kept (policy.retiredKeys, policy.retiredKeyRetentionDays). */
import type { RegisteredVersion } from '../rotation/store.js';
import type { CoreContext } from './context.js';

const DAY_MS = 86_400_000;

export interface RetentionInfo {
  version: string;
  retiredAt: Date;
  /** When purge may destroy it; null when policy keeps it (retiredKeys: archive). */
  destroyAfter: Date | null;
}

/** Retired versions whose material still exists, and when each may be destroyed. */
export function retention(ctx: CoreContext, versions: readonly RegisteredVersion[]): RetentionInfo[] {
  const p = ctx.config.policy;
  return versions
    .filter((v) => v.state === 'retired' && v.material === 'present')
    .map((v) => ({
      version: v.version,
      retiredAt: v.stateChangedAt,
      destroyAfter: p.retiredKeys === 'destroy' ? new Date(v.stateChangedAt.getTime() + p.retiredKeyRetentionDays * DAY_MS) : null,
    }));
}
