/**
 * A real otad process killed with SIGKILL while it holds an update lease: the restarted otad
 * finishes the run it was in (recovery) without asking the fleet server for a lease again; the
 * killed process's lease is left to expire on the server.
 */
import { rmSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { makeSandbox, readSaved, spawnOtad, waitUntil, type OtadProcess } from '../../support/otad-process.js';
import { protocolOperator, startFleetProtocolServer } from '../../support/fleet-protocol-server.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function eventually<T>(probe: () => Promise<T | null>, what: string): Promise<T> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const v = await probe();
    if (v !== null) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('a lease holder killed mid-run', () => {
  it('restarts and finishes the run without requesting a new lease', async () => {
    const server = await startFleetProtocolServer();
    cleanups.push(() => server.close());
    const op = protocolOperator(server.url);
    await op.settings({ autoAccept: true });
    const box = makeSandbox({
      server: { url: server.url, connectTimeout: '2s', headersTimeout: '2s' },
      decision: { defaultChoice: 'UPDATE_NOW', choiceTimeout: '0' },
      fleet: { lease: { enabled: true, ttl: '3s', renewEvery: '500ms' } },
    }, 'otad-lease-crash-');
    cleanups.push(() => rmSync(box.dir, { recursive: true, force: true }));

    const first: OtadProcess = spawnOtad(box, { fake: { delayMs: { validate: 60_000 } }, env: { OTA_TEST_CHECK_ON_START: '1' } });
    cleanups.push(() => first.kill());
    await first.ready();
    await waitUntil(() => readSaved(box.dbPath)?.state === 'validate', { what: 'the run to reach validation' });
    const granted = await eventually(async () => (await op.state()).leaseLog.find((e) => e.event === 'granted') ?? null, 'a lease');
    expect((await first.kill('SIGKILL')).signal).toBe('SIGKILL');
    const requestsBefore = (await op.state()).received.filter((r) => r.path === '/api/v1/leases').length;

    const second = spawnOtad(box, { fake: { delayMs: { validate: 100 } } });
    cleanups.push(() => second.kill());
    await second.ready();
    await waitUntil(() => readSaved(box.dbPath)?.state === 'idle' && readSaved(box.dbPath)?.context.lastOutcome === 'committed', { what: 'the recovered run to commit' });

    const after = await op.state();
    expect(after.received.filter((r) => r.path === '/api/v1/leases')).toHaveLength(requestsBefore);
    expect(after.leaseLog.filter((e) => e.event === 'granted')).toEqual([granted]);
    // Nothing returned it: the killed process's lease ends by its TTL on the server.
    expect(after.leaseLog.some((e) => e.event === 'returned')).toBe(false);
    await second.kill('SIGTERM');
  });
});
