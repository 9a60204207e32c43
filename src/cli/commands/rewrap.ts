/** `keyctl rewrap`: re-wrap every wrapped data key under the new key-encryption key (core/rewrap.ts). */
import { rewrap } from '../../core/rewrap.js';
import { ExitCode } from '../../base/exit-codes.js';
import { withCoreContext, type CliRuntime } from '../runtime.js';
import type { RewrapOptions } from '../specs.js';

export async function run(rt: CliRuntime, f: RewrapOptions): Promise<number> {
  return withCoreContext(rt, async (ctx) => {
    const r = await rewrap(ctx, { to: f.to, dryRun: Boolean(f.dryRun) });
    rt.output.result(r, () => {
      const lines: string[] = [];
      const todo = r.entries.filter((e) => e.state === 'would-rewrap');
      const done = r.entries.filter((e) => e.state === 'rewrapped');
      const changed = r.entries.filter((e) => e.state === 'changed-meanwhile');
      const current = r.entries.filter((e) => e.state === 'current');
      if (r.dryRun) lines.push(todo.length ? `would re-wrap ${todo.length} data key(s) under ${r.target}:` : `every data key is already under ${r.target}`);
      else lines.push(done.length ? `re-wrapped ${done.length} data key(s) under ${r.target}, each read back:` : `every data key is already under ${r.target}`);
      for (const e of [...todo, ...done]) lines.push(`  ${e.version} (${e.place}): ${e.from}${e.to ? ` → ${e.to}` : ''}`);
      if (current.length && (todo.length || done.length)) lines.push(`  ${current.length} already under it`);
      for (const e of changed) lines.push(`  ${e.version} (${e.place}): changed by someone else meanwhile; run keyctl rewrap again`);
      if (r.unusedKeks.length) lines.push(`no stored key of keyring ${r.keyring} is wrapped by ${r.unusedKeks.join(', ')} any more`);
      if (!r.dryRun) lines.push(`key-encryption keys in use: ${r.keksInUse.join(', ') || 'none'}`);
      return lines.join('\n');
    });
    return r.entries.some((e) => e.state === 'changed-meanwhile') ? ExitCode.PROBLEMS_FOUND : ExitCode.OK;
  });
}
