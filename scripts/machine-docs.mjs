// Regenerates the rotation machine's tables in docs/rotation.md from the built machine (npm run docs:machine).
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { withMachineTables } from '../dist/rotation/machine-docs.js';

const doc = fileURLToPath(new URL('../docs/rotation.md', import.meta.url));
writeFileSync(doc, withMachineTables(readFileSync(doc, 'utf8')));
console.log('docs/rotation.md: machine tables regenerated');
