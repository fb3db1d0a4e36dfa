import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../../src/core/errors.js';
import { buildConfig } from '../../../src/config/load.js';

const docs = (name: string) => readFileSync(join(import.meta.dirname, '../../../docs', name), 'utf8');

describe('the documentation', () => {
  it('lists every error code with its category', () => {
    const table = docs('errors.md');
    for (const [code, meta] of Object.entries(ErrorCodes)) {
      expect(table, code).toContain(`| \`${code}\` | ${meta.category} |`);
    }
  });

  it('documents every configuration key that has a default', () => {
    const text = docs('configuration.md');
    const c = buildConfig({});
    for (const section of ['server', 'paths', 'logging', 'api', 'dbus', 'recovery', 'inhibit'] as const) {
      for (const key of Object.keys(c[section])) {
        expect(text, `${section}.${key}`).toContain(`${section}.${key}`);
      }
    }
    for (const key of [...Object.keys(c.schedule), ...Object.keys(c.decision)]) expect(text, key).toContain(`\`${key}\``);
  });
});
