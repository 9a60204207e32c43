/**
 * The tables of docs/rotation.md that come from the rotation machine: between the
 * `<!-- machine:phases -->` and `<!-- machine:rules -->` markers. `npm run docs:machine` rewrites
 * them; test/unit/machine.test.ts fails when the doc and the machine disagree.
 */
import { phasesMarkdown, rulesMarkdown } from './machine.js';

export function withMachineTables(doc: string): string {
  const put = (text: string, name: string, body: string) => {
    const re = new RegExp(`(<!-- machine:${name} -->)[\\s\\S]*?(<!-- /machine:${name} -->)`);
    if (!re.test(text)) throw new Error(`docs/rotation.md lacks the <!-- machine:${name} --> markers`);
    return text.replace(re, (_m, a: string, b: string) => `${a}\n${body}\n${b}`);
  };
  return put(put(doc, 'phases', phasesMarkdown()), 'rules', rulesMarkdown());
}
