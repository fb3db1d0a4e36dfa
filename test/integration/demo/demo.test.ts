/**
 * `npm run demo` is the first command of the README: it must pass on a clean checkout. It runs
 * the built demo (npm test builds first) end to end: publish, update, automatic rollback.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../support/otad-process.js';

const built = join(REPO_ROOT, 'dist/src/demo/demo.js');

describe('the demo', () => {
  it.skipIf(!existsSync(built))('updates robot-ai, rolls a broken release back by itself, and exits 0', () => {
    const r = spawnSync(process.execPath, [built], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 240_000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('✓ robot-ai 1.1.0 is committed');
    expect(r.stdout).toContain('✓ 1.2.0 was rolled back (HEALTH_CHECK_FAILED): robot-ai is on 1.1.0');
    expect(r.stdout).toContain('✓ 1.2.0 is marked bad and not offered again');
    expect(r.stdout).toMatch(/update\s+1\.1\.0\s+→ 1\.2\.0\s+rolled-back/);
    // A newcomer reads causes, not XState internals; the deliberate wrong choice says so.
    expect(r.stdout).not.toContain('xstate.');
    expect(r.stdout).toContain('checking → awaitingChoice  (check found 1.1.0)');
    expect(r.stdout).toContain('validate → rollback  (health check failed (HEALTH_CHECK_FAILED');
    expect(r.stdout).toContain('commit → idle  (1.1.0 committed)');
    expect(r.stdout).toContain('rollback → idle  (rolled back to 1.1.0)');
    expect(r.stdout).toContain('(on purpose, a wrong choice first');
    expect(r.stdout).not.toMatch(/http:http|http http/);
    // The downtime of each run, its split, and the same figures scraped from the real /metrics.
    expect(r.stdout).toContain('✓ otad measured the downtime of the update, from the first stop to the first green probe round');
    expect(r.stdout).toContain('✓ the rollback run counts its downtime until 1.1.0 is green again');
    expect(r.stdout).toMatch(/downtime [\d.]+ m?s until green on the new release: stop [\d.]+ m?s, switch [\d.]+ m?s, start [\d.]+ m?s, first green probe [\d.]+ m?s .*otad's own share [\d.]+ m?s/);
    expect(r.stdout).toMatch(/downtime [\d.]+ m?s until green on the old release/);
    expect(r.stdout).toMatch(/otad_last_downtime_seconds\{product="robot-ai",part="otad",green_on="old"\} [\d.e-]+/);
    expect(r.stdout).toMatch(/otad_downtime_seconds_count\{product="robot-ai",part="total",outcome="committed"\} 1/);
    expect(r.stdout).toMatch(/otad_downtime_seconds_count\{product="robot-ai",part="total",outcome="rolled-back"\} 1/);
    expect(r.stdout).toContain('✓ the metrics carry the last downtime and its split');
  }, 300_000);
});
