/**
 * Signed requirements end to end, as an operator sees them: `ota-repo add --arch` on the publisher,
 * a spawned ota-server, a real otad on this machine. A release built only for another architecture
 * is never offered, downloaded or installed here; the newest release that fits is; the release
 * cache that the check writes is what GET /api/v1/repositories shows (release notes while offline).
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { normalizeArch } from '../../../src/manifest/requirements.js';
import { otaRepo, READ_TOKEN, startFleet, type Fleet } from '../../support/fleet-e2e.js';
import { writeTarGz } from '../../support/tar-fixtures.js';

const here = normalizeArch(process.arch);
const other = here === 'arm64' ? 'amd64' : 'arm64';

let fleet: Fleet;
beforeAll(async () => {
  fleet = await startFleet();
}, 120_000);
afterAll(async () => fleet?.close());

async function publish(version: string, extra: string[]): Promise<void> {
  const file = await writeTarGz(join(fleet.dir, `robot-ai-${version}.tar.gz`), [
    { name: 'VERSION', content: `${version}\n` },
    { name: 'bin/', type: 'directory' },
  ]);
  const r = await otaRepo(['--repo', fleet.repoDir, '--keys', fleet.keysDir, 'add', '--product', 'robot-ai', '--version', version, '--package', file, '--notes', `notes of ${version}`, ...extra, '--publish']);
  if (r.code !== 0) throw new Error(`ota-repo add ${version} failed: ${r.stderr}`);
}

describe(`a release signed for ${other} only, on a ${here} robot`, () => {
  it('is passed over: the newest release that fits is installed, and the other one never is', async () => {
    await publish('1.1.0', ['--arch', `${here},${other}`]);
    await publish('1.2.0', ['--arch', other]);
    const { status, run } = await fleet.checkAndUpdate('1.1.0');
    expect(run.outcome).toBe('committed');
    expect(status.installedVersion).toBe('1.1.0');
    expect(fleet.log()).toMatch(new RegExp(`release 1\\.2\\.0 passed over: it is not for this robot \\(release 1\\.2\\.0 is built for ${other}; this robot is ${here}\\)`));
    expect(fleet.leftovers().filter((f) => f.includes('1.2.0'))).toEqual([]);

    // Checked again from 1.1.0: nothing to offer, and never the other architecture's release.
    const check = await fleet.api('POST', '/api/v1/events', { product: 'robot-ai', type: 'CHECK_NOW' });
    expect(check.status).toBe(202);
    const settled = await fleet.settled();
    expect(settled.state).toBe('idle');
    expect(settled.installedVersion).toBe('1.1.0');
    expect(settled.offeredVersion ?? null).toBeNull();
  });

  it('shows the last verified release with its notes from the release cache', async () => {
    const { status, body } = await fleet.api('GET', '/api/v1/repositories', undefined, READ_TOKEN);
    expect(status).toBe(200);
    const ai = body.repositories.find((r: { product: string }) => r.product === 'robot-ai');
    expect(ai.latestRelease).toMatchObject({ version: '1.1.0', channel: 'stable', notes: 'notes of 1.1.0' });
    expect(typeof ai.latestRelease.checkedAt).toBe('number');
  });
});
