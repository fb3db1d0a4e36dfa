/**
 * The download rate cap as an operator sets it: `products[].network.maxRateBps` in a real otad's
 * configuration file, a release published by `ota-repo` and served by a spawned `ota-server`, and
 * an update driven over REST. The package is incompressible, so the bytes on the wire are the
 * package's. Asserted, from what otad itself reports:
 *  - the release installs and commits with the signed tree;
 *  - otad's "downloading package" line names the cap, and its "download complete" line reports an
 *    average rate no higher than the cap allows (a token bucket passes at most its burst plus the
 *    rate times the time taken: a loaded machine can only make the average lower);
 *  - the update took at least as long as the cap forces for those bytes (a lower bound: the cap
 *    can only make it slower, and so can a slow machine).
 * The rate held over 60 s windows is measured by `npm run bench ratecap`.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRateLimiter } from '../../../src/net/rate-limit.js';
import { startFleet, type Fleet } from '../../support/fleet-e2e.js';
import { randomish, writeTarGz } from '../../support/tar-fixtures.js';

const CAP = 256 * 1024;
const MODEL = randomish(1024 * 1024, 7);

let fleet: Fleet;
beforeAll(async () => {
  fleet = await startFleet({ product: { network: { maxRateBps: CAP } } });
}, 120_000);
afterAll(async () => {
  await fleet?.close();
});

interface LogLine {
  message: string;
  [k: string]: unknown;
}

describe('network.maxRateBps on a real otad', () => {
  it('holds the download of an update to the configured cap, says so in its log, and installs the release', async () => {
    const pkg = await writeTarGz(join(fleet.dir, 'robot-ai-1.1.0.tar.gz'), [
      { name: 'VERSION', content: '1.1.0\n' },
      { name: 'bin/', type: 'directory' },
      { name: 'bin/robot-ai', content: '#!/bin/sh\necho 1.1.0\n', mode: 0o755 },
      { name: 'model.bin', content: MODEL },
    ]);
    const pkgBytes = readFileSync(pkg).length;
    expect(pkgBytes).toBeGreaterThan(MODEL.length);
    await fleet.publish('1.1.0', pkg);

    const started = performance.now();
    const { status, run } = await fleet.checkAndUpdate('1.1.0');
    const tookMs = performance.now() - started;
    expect(run.outcome, JSON.stringify(run.error)).toBe('committed');
    expect(status.installedVersion).toBe('1.1.0');
    expect(createHash('sha256').update(readFileSync(join(fleet.installPath, 'model.bin'))).digest('hex')).toBe(createHash('sha256').update(MODEL).digest('hex'));

    // The log file and otad's stdout carry the same lines: each once.
    const lines = [...new Set(fleet.log().split('\n').filter((l) => l.startsWith('{')))].map((l) => JSON.parse(l) as LogLine);
    const downloading = lines.find((l) => l.message === 'downloading package');
    expect(downloading, 'the "downloading package" line').toMatchObject({ bytes: pkgBytes, rateCapBps: CAP });
    const complete = lines.filter((l) => l.message === 'download complete' && l.bytes === pkgBytes);
    expect(complete).toHaveLength(1);
    const done = complete[0] as LogLine & { ms: number; averageBps: number; rateCapBps: number; resumedFrom: number };
    expect(done.rateCapBps).toBe(CAP);
    expect(done.resumedFrom).toBe(0);
    const burst = createRateLimiter({ bytesPerSec: CAP }).burstBytes;
    // At most burst + rate × time through the bucket (and the chunk that was in flight when it ran dry).
    expect(done.averageBps).toBeLessThanOrEqual(CAP + ((burst + 64 * 1024) * 1000) / done.ms);
    const minMs = ((pkgBytes - burst - 64 * 1024) / CAP) * 1000;
    expect(done.ms).toBeGreaterThanOrEqual(minMs);
    expect(tookMs).toBeGreaterThanOrEqual(minMs);
  }, 180_000);
});
