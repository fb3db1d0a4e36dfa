/**
 * The power-cut harness in its short form (docs/crash-testing.md "Power cuts"): `npm run powercut`'s
 * program (dist/src/bench/powercut.js) with 5 cuts of a real Debian 12 guest under qemu, SIGKILLed
 * at seeded random instants of the update cycle. Every cut must leave one complete published
 * release that the database agrees with, a run that finished or rolled back by itself, nothing
 * half-written, the service started by otad, and a clean fsck. A good release marked bad by the
 * validation after a cut is printed as a finding, not yet an invariant: fixed and tested with
 * SIGKILL (test/integration/daemon/validate-after-cut.test.ts), not yet confirmed by a guest run.
 *
 * OTA_POWERCUT_CUTS sets the count (default 5), OTA_POWERCUT_SEED the seed (CI: .ci/run),
 * OTA_SKIP_POWERCUT=1 skips it. Skips, saying why, when not root or without qemu, debootstrap or
 * e2fsprogs; the first run builds the guest image (debootstrap: minutes) into .cache/powercut.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { missingFacility, type CutRecord } from '../../../src/bench/powercut.js';
import { REPO_ROOT } from '../../support/otad-process.js';

const CUTS = Number(process.env.OTA_POWERCUT_CUTS ?? 5);
const SEED = process.env.OTA_POWERCUT_SEED !== undefined ? Number(process.env.OTA_POWERCUT_SEED) >>> 0 : (Date.now() ^ (process.pid << 16)) >>> 0;
const skip = process.env.OTA_SKIP_POWERCUT === '1' ? 'OTA_SKIP_POWERCUT=1' : missingFacility();
if (skip !== null) console.warn(`power-cut test skipped: ${skip}`);

describe.skipIf(skip !== null)('power cuts of a Debian 12 guest running otad', () => {
  it(`${CUTS} cuts (seed ${SEED}) leave one complete release, an agreeing database, a settled run and a clean file system`, async () => {
    const entry = join(REPO_ROOT, 'dist/src/bench/powercut.js');
    expect(existsSync(entry), `${entry} is missing: run npm run build`).toBe(true);
    const results = join(mkdtempSync(join(tmpdir(), 'otad-powercut-')), 'results.jsonl');
    const child = spawn(process.execPath, [entry, '--count', String(CUTS), '--seed', String(SEED), '--results', results], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      process.stdout.write(b);
    });
    child.stderr.on('data', (b: Buffer) => {
      out += b.toString();
      process.stderr.write(b);
    });
    const code = await new Promise<number | null>((r) => child.once('exit', r));
    expect(code, out.slice(-4000)).toBe(0);
    const records = readFileSync(results, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as CutRecord);
    expect(records).toHaveLength(CUTS);
    // Findings (a good release blamed by the validation after a cut in apply or validate) are
    // printed here, not invariants, until a guest run confirms the fix (docs/crash-testing.md).
    const findings = records.flatMap((r) => (r.findings ?? []).map((f) => `cut ${r.cut} (seed ${SEED}): ${f}`));
    if (findings.length > 0) console.warn(`power-cut open findings (docs/crash-testing.md, "Open findings"):\n${findings.join('\n')}`);
    for (const r of records) {
      expect(r.violations, `cut ${r.cut} in ${r.landed.class}`).toEqual([]);
      expect(r.fsck).toBe('clean');
      expect(r.after.state).toBe('idle');
      expect(r.after.health).toBe(r.after.installed);
    }
  }, 3_600_000);
});
