/**
 * The REAL daemon (dist/src/cli/otad.js) installs releases that were published through a product's
 * delegated targets role, from a keys folder holding only that role's key and the online snapshot
 * and timestamp keys (the publisher studio's situation), served by ota-server on loopback.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BUILT_OTAD, PRODUCT, createCrashWorld, type CrashWorld } from '../../support/crash-harness.js';
import { readSaved, waitUntil } from '../../support/otad-process.js';

describe('otad follows a TUF delegation', () => {
  let world: CrashWorld | undefined;
  afterAll(async () => {
    await world?.close(false);
  });

  it('finds, installs and commits releases signed by the delegated role alone', async () => {
    expect(existsSync(BUILT_OTAD), `${BUILT_OTAD} is missing: run \`npm run build\` first`).toBe(true);
    world = await createCrashWorld({ seed: 2727, bigFileBytes: 64 * 1024, brokenEvery: 1000, delegated: true });
    const w = world;
    expect(readdirSync(join(w.root, 'server/studio-keys')).sort()).toEqual(['delegated', 'snapshot', 'timestamp']);
    const daemon = await w.startOtad();
    const update = async (): Promise<void> => {
      const { runId } = await daemon.api.request<{ runId: string }>('POST', '/api/v1/events', { product: PRODUCT, type: 'CHECK_NOW' });
      const settled = await waitUntil(() => {
        const s = readSaved(w.sandbox.dbPath);
        return s?.state === 'idle' && s.runId === runId && s.context.lastOutcome !== null ? s : null;
      }, { timeoutMs: 90_000, intervalMs: 50, what: `run ${runId} to settle` }).catch((error: unknown) => {
        throw new Error(`${(error as Error).message}\n--- otad log tail ---\n${w.logTail(30)}`);
      });
      expect(settled.context.lastOutcome, w.logTail()).toBe('committed');
    };
    const r1 = await w.publishNext();
    expect(readdirSync(join(w.root, 'server/repo/metadata'))).toContain('2.product-robot-ai.json');
    await update();
    expect((await w.inspectInstall()).matches.map((m) => m.version)).toEqual([r1.version]);
    const r2 = await w.publishNext();
    await update();
    expect((await w.inspectInstall()).matches.map((m) => m.version)).toEqual([r2.version]);
    await daemon.proc.kill('SIGTERM');
  }, 300_000);
});
