// Wraps each dashboard in ../grafana as a TypeScript constant typed AsJson<Dashboard>, so that tsc
// checks it as an object literal. Importing the .json file instead would widen every string to
// `string`, and no union or enum field could then be checked.
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dashboards = join(here, '..', 'grafana');
const out = join(here, 'generated');
rmSync(out, { recursive: true, force: true });
mkdirSync(out);
const files = readdirSync(dashboards).filter((f) => f.endsWith('.json'));
if (files.length === 0) {
  throw new Error(`no dashboards in ${dashboards}`);
}
for (const file of files) {
  const json = JSON.stringify(JSON.parse(readFileSync(join(dashboards, file), 'utf8')), null, 2);
  writeFileSync(
    join(out, basename(file, '.json') + '.ts'),
    [
      `// Generated from dashboards/grafana/${file} by generate.mjs; do not edit.`,
      `import type { Dashboard } from '@grafana/schema';`,
      `import type { AsJson } from '../as-json';`,
      ``,
      `export const dashboard: AsJson<Dashboard> = ${json};`,
      ``,
    ].join('\n'),
  );
}
console.log(`generated ${files.length} dashboard checks: ${files.join(', ')}`);
