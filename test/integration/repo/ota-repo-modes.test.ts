/**
 * `ota-repo add --source` and the permission bits of a publisher's tree, through the real CLI:
 * setuid, setgid and sticky bits are refused before anything is staged (robots refuse them, and
 * dropping them quietly would ship a program that no longer does what it was built to do); group
 * and other write bits, common under umask 002, are cleared and the publisher is told which.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { makeTempDir } from '../../support/tuf-repo.js';
import { otaRepo } from '../../support/fleet-e2e.js';

describe('ota-repo add --source: permission bits', () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir) await fs.rm(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('refuses a setuid file, staging nothing, and says which group/other write bits it cleared', async () => {
    dir = await makeTempDir('otad-cli-modes-');
    const base = ['--repo', path.join(dir, 'repo'), '--keys', path.join(dir, 'keys')];
    expect((await otaRepo([...base, 'init'])).code).toBe(0);
    const src = path.join(dir, 'src');
    await fs.mkdir(path.join(src, 'bin'), { recursive: true });
    await fs.writeFile(path.join(src, 'VERSION'), '1.0.0\n');
    await fs.writeFile(path.join(src, 'bin/robot-ai'), '#!/bin/sh\n');
    await fs.chmod(path.join(src, 'bin/robot-ai'), 0o4755);

    const refused = await otaRepo([...base, 'add', '--product', 'robot-ai', '--version', '1.0.0', '--source', src]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('PACKAGE_UNSAFE_MODE: 1 entry has setuid, setgid or sticky bits, which robots refuse: bin/robot-ai (4755)');
    const staged = JSON.parse(await fs.readFile(path.join(dir, 'repo', 'staged.json'), 'utf8').catch(() => '{}')) as Record<string, unknown>;
    expect(Object.keys(staged)).toEqual([]);
    expect((await fs.readdir(path.join(dir, 'repo'))).filter((n) => n.startsWith('.pack-'))).toEqual([]);

    await fs.chmod(path.join(src, 'bin/robot-ai'), 0o775);
    await fs.chmod(path.join(src, 'VERSION'), 0o664);
    const added = await otaRepo([...base, 'add', '--product', 'robot-ai', '--version', '1.0.0', '--source', src]);
    expect(added.code, added.stderr).toBe(0);
    expect(added.stdout).toContain('note: cleared the group and other write bits of 2 entries (robots refuse them): VERSION, bin/robot-ai');
  });
});
