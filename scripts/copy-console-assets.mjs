// The build's second step: tsc compiles only .ts, so the web console's static files are copied
// beside the compiled console module (dist/http/console/assets), where it reads them at start.
import { cpSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const from = join(root, 'src', 'http', 'console', 'assets');
const to = join(root, 'dist', 'http', 'console', 'assets');
rmSync(to, { recursive: true, force: true });
cpSync(from, to, { recursive: true });
