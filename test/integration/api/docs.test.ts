import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildOpenApiDocument } from '../../../src/api/openapi.js';
import { ErrorCodes } from '../../../src/core/errors.js';

const docs = (name: string) => readFileSync(resolve(import.meta.dirname, '../../../docs', name), 'utf8');

describe('docs/api.md against the OpenAPI document', () => {
  it('lists every operation of the document as "METHOD /api/v1/path"', () => {
    const text = docs('api.md');
    const paths = buildOpenApiDocument().paths as Record<string, Record<string, unknown>>;
    for (const [path, ops] of Object.entries(paths)) {
      for (const method of Object.keys(ops)) expect(text, `${method} ${path}`).toContain(`${method.toUpperCase()} /api/v1${path}`);
    }
  });

  it('documents every API error code', () => {
    const text = docs('api.md');
    for (const code of Object.keys(ErrorCodes).filter((c) => c.startsWith('API_'))) expect(text, code).toContain(`\`${code}\``);
  });

  it('documents every D-Bus member', () => {
    const text = docs('dbus.md');
    for (const m of ['UpdateNow', 'Schedule3AM', 'CheckNow', 'Cancel', 'Rollback', 'RollbackWith', 'GetStatus', 'GetReleases', 'UnmarkBad', 'StateChanged', 'Progress', 'UpdateAvailable']) expect(text).toContain(m);
  });

  it('documents every member of the v2 introspection (docs/dbus/*.xml) in docs/dbus.md', () => {
    const text = docs('dbus.md');
    for (const file of ['dbus/io.otad.Manager1.xml', 'dbus/io.otad.Product1.xml']) {
      const names = [...docs(file).matchAll(/<(?:method|property|signal) name="(\w+)"/g)].map((m) => m[1] as string);
      expect(names.length).toBeGreaterThan(3);
      for (const n of names) expect(text, `${file}: ${n}`).toContain(`\`${n}`);
    }
  });
});
