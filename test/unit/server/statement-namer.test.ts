/** Which statements the PostgreSQL driver prepares (src/server/store/postgres-driver.ts). */
import { describe, expect, it } from 'vitest';
import { statementNamer } from '../../../src/server/store/postgres-driver.js';

describe('statementNamer', () => {
  it('names a statement with parameters, the same name for the same text, another for another text', () => {
    const name = statementNamer();
    const a = name('UPDATE devices SET last_seen = $2 WHERE id = $1', [1, 'd']);
    expect(a).toMatch(/^otad_\d+$/);
    expect(name('UPDATE devices SET last_seen = $2 WHERE id = $1', [2, 'e'])).toBe(a);
    const b = name('SELECT id, status FROM devices WHERE id = $1', ['d']);
    expect(b).toMatch(/^otad_\d+$/);
    expect(b).not.toBe(a);
  });

  it('leaves unprepared statements without parameters and statements whose result is *', () => {
    const name = statementNamer();
    expect(name('BEGIN', [])).toBeUndefined();
    expect(name('SELECT * FROM devices WHERE id = $1', ['d'])).toBeUndefined();
    expect(name('SELECT d.* FROM devices d WHERE id = $1', ['d'])).toBeUndefined();
    expect(name('INSERT INTO key_conflicts (device_id) VALUES ($1) RETURNING *', ['d'])).toBeUndefined();
  });

  it('prepares at most 512 texts; the rest run unnamed', () => {
    const name = statementNamer();
    const names = Array.from({ length: 600 }, (_, i) => name(`SELECT id FROM devices WHERE id IN (${Array.from({ length: i + 1 }, (_, j) => `$${j + 1}`).join(', ')})`, ['d']));
    expect(new Set(names.slice(0, 512)).size).toBe(512);
    expect(names.slice(512).every((n) => n === undefined)).toBe(true);
  });
});
