/** `keyctl purge`: destroy retired keys whose retention has passed (after a full decryption scan). */
import { purge } from '../../core/purge.js';
import { ExitCode } from '../../base/exit-codes.js';
import { formatCount } from '../../ui/format.js';
import { withCoreContext, type CliRuntime } from '../runtime.js';
import type { PurgeOptions } from '../specs.js';

export async function run(rt: CliRuntime, f: PurgeOptions): Promise<number> {
  return withCoreContext(rt, async (ctx) => {
    const r = await purge(ctx, { dryRun: Boolean(f.dryRun) });
    const kept = r.kept.map((k) => ({ version: k.version, retiredAt: k.retiredAt.toISOString(), destroyAfter: k.destroyAfter?.toISOString() ?? null }));
    rt.output.result(
      { dryRun: Boolean(f.dryRun), destroyed: f.dryRun ? [] : r.destroyed, due: f.dryRun ? r.destroyed : [], kept, valuesChecked: r.valuesChecked },
      () => {
        const lines: string[] = [];
        if (f.dryRun) lines.push(r.destroyed.length ? `would destroy ${r.destroyed.join(', ')} (retention passed)` : 'nothing to destroy yet');
        else
          lines.push(
            r.destroyed.length
              ? `destroyed ${r.destroyed.join(', ')} after checking ${formatCount(r.valuesChecked)} value(s) decrypt without them${ctx.keystore.destructionNote ? ` (${ctx.keystore.destructionNote()})` : ''}`
              : 'nothing to destroy yet',
          );
        for (const k of kept)
          lines.push(
            `  ${k.version}: retired ${k.retiredAt.slice(0, 10)}, kept ${k.destroyAfter ? `until ${k.destroyAfter.slice(0, 10)}` : 'for good (policy.retiredKeys: archive)'}`,
          );
        return lines.join('\n');
      },
    );
    return ExitCode.OK;
  });
}
