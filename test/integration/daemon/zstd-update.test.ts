/**
 * zstd packages with the REAL daemon (dist/src/cli/otad.js) against ota-server serving a
 * repository the real publisher wrote with `compression: 'zstd'`: the first update installs a
 * `.tar.zst` package, the second is staged from a `.delta.tar.zst` delta, and both trees are the
 * published releases byte for byte. The readers choose the decompressor by the file's first bytes.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { zstdSupported } from '../../../src/package/compression.js';
import { BUILT_OTAD, PRODUCT, createCrashWorld, type CrashWorld } from '../../support/crash-harness.js';
import { checkNowAndSettle, stagedLines as staged } from '../../support/update-run.js';

const skip = zstdSupported() ? false : `node:zlib of Node ${process.versions.node} has no zstd (Node 22.15 or later has it)`;
if (skip) console.warn(`SKIPPED zstd-update: ${skip}`);

describe.skipIf(skip !== false)('otad installs zstd packages and deltas end to end', () => {
  let world: CrashWorld | undefined;
  afterAll(async () => {
    await world?.close(false);
  });

  it('installs a .tar.zst package, then stages the next release from a .delta.tar.zst delta', async () => {
    expect(existsSync(BUILT_OTAD), `${BUILT_OTAD} is missing: run \`npm run build\` first`).toBe(true);
    // Releases come in pairs that share the model, so the second one has a small delta.
    world = await createCrashWorld({ seed: 2424, modelChangesEvery: 2, brokenEvery: 1000, compression: 'zstd' });
    const w = world;
    const daemon = await w.startOtad();
    const update = async (): Promise<string> => {
      const { runId, outcome } = await checkNowAndSettle(w, daemon);
      expect(outcome, w.logTail()).toBe('committed');
      return runId;
    };
    const stagedLines = (runId: string) => staged(w, runId);

    // The model changes at 1.2.0 and stays the same in 1.3.0 (modelChangesEvery 2): the update to
    // 1.3.0 from 1.2.0 is a small delta.
    const r1 = await w.publishNext();
    const first = await update();
    expect(stagedLines(first).map((l) => l.via)).toEqual(['package']);
    expect((await w.inspectInstall()).matches.map((m) => m.version)).toEqual([r1.version]);

    const r2 = await w.publishNext();
    await update();
    expect((await w.inspectInstall()).matches.map((m) => m.version)).toEqual([r2.version]);

    const r3 = await w.publishNext();
    const third = await update();
    expect(stagedLines(third)).toMatchObject([{ via: 'delta', fromVersion: r2.version }]);
    expect((await w.inspectInstall()).matches.map((m) => m.version)).toEqual([r3.version]);

    // Every package and delta ota-repo wrote is zstd: by name, and by the bytes otad read.
    const names = readdirSync(join(w.repoDir, 'targets', PRODUCT));
    const packages = names.filter((n) => /\.tar\.(gz|zst)$/.test(n) && !n.includes('.delta.'));
    const deltas = names.filter((n) => n.includes('.delta.'));
    expect(packages.length, names.join('\n')).toBe(3);
    expect(deltas.length, names.join('\n')).toBeGreaterThan(0);
    for (const n of [...packages, ...deltas]) {
      expect(n, names.join('\n')).toMatch(/\.tar\.zst$/);
      expect(readFileSync(join(w.repoDir, 'targets', PRODUCT, n)).subarray(0, 4).toString('hex')).toBe('28b52ffd');
    }
  }, 240_000);
});
