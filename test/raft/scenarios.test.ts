import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runScript } from './script.js';

/**
 * Scenario tests as data: each file in testdata/ is commands, `----`, and the transcript they
 * must print. `UPDATE=1 npx vitest run test/raft/scenarios.test.ts` rewrites the transcripts on
 * purpose; review the diff.
 */
const DIR = join(import.meta.dirname, 'testdata');

describe('Raft scenarios', () => {
  for (const file of readdirSync(DIR).filter((f) => f.endsWith('.txt'))) {
    it(file, () => {
      const text = readFileSync(join(DIR, file), 'utf8');
      const actual = runScript(text);
      if (process.env.UPDATE === '1') writeFileSync(join(DIR, file), actual);
      else expect(actual).toBe(text);
    });
  }
});
