import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { createServer, type OtaServer } from '../../../src/server/app.js';
import { createTufRepository } from '../../../src/trust/tuf-repository.js';
import { createFetchDownloader, createFetchMetadataFetcher } from '../../../src/trust/fetch-ports.js';
import { makeTempDir, sha256 } from '../../support/tuf-repo.js';
import { HOSTILE_CASES, writeTarGz } from '../../support/tar-fixtures.js';
import { otaRepo } from '../../support/fleet-e2e.js';

describe('ota-repo CLI (spawned)', () => {
  let dir: string | undefined;
  let server: OtaServer | undefined;
  afterEach(async () => {
    await server?.close();
    if (dir !== undefined) await fs.rm(dir, { recursive: true, force: true });
  });

  it('init, add --publish and verify build a repository a robot can update from over ota-server; misuse fails in one line', async () => {
    dir = await makeTempDir('otad-cli-');
    const repoDir = path.join(dir, 'repo');
    const keysDir = path.join(dir, 'keys');
    const base = ['--repo', repoDir, '--keys', keysDir];
    expect((await otaRepo([...base, 'init', '--expiry', 'timestamp=2d'])).code).toBe(0);
    const mode = (await fs.stat(path.join(keysDir, 'root', (await fs.readdir(path.join(keysDir, 'root')))[0]!))).mode & 0o777;
    expect(mode).toBe(0o600);
    await writeTarGz(path.join(dir, 'pkg.tar.gz'), [{ name: 'VERSION', content: '3.1.0\n' }, { name: 'bin/app', content: 'x'.repeat(8000), mode: 0o755 }]);
    const pkg = await fs.readFile(path.join(dir, 'pkg.tar.gz'));
    const added = await otaRepo([...base, '--json', 'add', '--product', 'robot-ai', '--version', '3.1.0', '--package', path.join(dir, 'pkg.tar.gz'), '--notes', 'from the CLI', '--publish']);
    expect(added.code).toBe(0);
    expect(JSON.parse(added.stdout).packageTarget.sha256).toBe(sha256(pkg));
    const verified = await otaRepo([...base, 'verify']);
    expect(verified.stdout).toContain('repository OK');

    const misuse = await otaRepo([...base, 'add', '--product', 'robot-ai', '--version', 'three', '--package', path.join(dir, 'pkg.tar.gz')]);
    expect(misuse.code).not.toBe(0);
    expect(misuse.stderr.trim().split('\n')).toHaveLength(1);
    expect(misuse.stderr).toContain('field version');
    const noRepo = await otaRepo(['--keys', keysDir, 'publish']);
    expect(noRepo.code).not.toBe(0);
    expect(noRepo.stderr).toContain('--repo');

    server = createServer({ repoDir, keysDir, clock: new ManualClock(Date.now()), logger: silentLogger, timestampRefresh: false });
    const { url } = await server.start(0, '127.0.0.1');
    const robotDir = path.join(dir, 'robot');
    await fs.mkdir(robotDir);
    const robot = createTufRepository({
      metadataDir: path.join(robotDir, 'metadata'),
      metadataBaseUrl: `${url}/metadata`,
      trustedRootPath: path.join(repoDir, 'metadata', '1.root.json'),
      fetcher: createFetchMetadataFetcher(),
      downloader: createFetchDownloader(),
      clock: new ManualClock(Date.now()),
      logger: silentLogger,
    });
    const latest = (await robot.latestRelease('robot-ai'))!;
    expect(latest.manifest).toMatchObject({ version: '3.1.0', notes: 'from the CLI' });
    const dest = path.join(robotDir, 'pkg.tar.gz');
    const p = latest.manifest.package;
    await robot.downloadTarget({ name: p.target, length: p.length, sha256: p.sha256 }, dest);
    expect(sha256(await fs.readFile(dest))).toBe(sha256(pkg));
  });

  it('add refuses, before signing, a package whose version file disagrees with --version or that the robot would reject', async () => {
    dir = await makeTempDir('otad-cli-');
    const base = ['--repo', path.join(dir, 'repo'), '--keys', path.join(dir, 'keys')];
    expect((await otaRepo([...base, 'init'])).code).toBe(0);
    const staged = async () => JSON.parse(await fs.readFile(path.join(dir!, 'repo', 'staged.json'), 'utf8').catch(() => '{}')) as Record<string, unknown>;

    // --source: the version file of the tree says 2.0.0, the publisher typed 2.0.1.
    const src = path.join(dir, 'src');
    await fs.mkdir(src);
    await fs.writeFile(path.join(src, 'VERSION'), '2.0.0\n');
    const mismatch = await otaRepo([...base, 'add', '--product', 'robot-ai', '--type', 'robot-ai', '--version', '2.0.1', '--source', src, '--publish']);
    expect(mismatch.code).toBe(1);
    expect(mismatch.stderr).toContain('RELEASE_VERSION_MISMATCH');
    expect(mismatch.stderr).toContain('VERSION says 2.0.0, not --version 2.0.1');
    expect(Object.keys(await staged())).toEqual([]);

    // A custom version file that is missing.
    const missing = await otaRepo([...base, 'add', '--product', 'robot-ai', '--version', '2.0.0', '--version-file', 'etc/version', '--source', src]);
    expect(missing.stderr).toContain('has no version file etc/version');

    // The robot's package scan runs too: a hostile entry is refused here, not on the robot.
    const hostile = HOSTILE_CASES.find((c) => c.code === 'PACKAGE_UNSAFE_PATH')!;
    const bad = await otaRepo([...base, 'add', '--product', 'robot-ai', '--version', '2.0.0', '--no-version-file', '--package', await hostile.build(dir)]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('PACKAGE_UNSAFE_PATH');
    expect(Object.keys(await staged())).toEqual([]);

    // Agreeing version file: staged, with the architecture requirement in the signed manifest.
    const good = await otaRepo([...base, '--json', 'add', '--product', 'robot-ai', '--type', 'robot-ai', '--version', '2.0.0', '--source', src, '--arch', 'arm64']);
    expect(good.code).toBe(0);
    expect(JSON.parse(good.stdout).manifest.requirements).toEqual({ arch: ['arm64'] });
  });
  it('delegate, delegations and publish --role: a keys folder with only the delegated key publishes its product and nothing else', async () => {
    dir = await makeTempDir('otad-cli-delegate-');
    const repoDir = path.join(dir, 'repo');
    const keysDir = path.join(dir, 'keys');
    const studioKeys = path.join(dir, 'studio-keys');
    const offline = ['--repo', repoDir, '--keys', keysDir];
    const studio = ['--repo', repoDir, '--keys', studioKeys];
    expect((await otaRepo([...offline, 'init'])).code).toBe(0);
    await fs.mkdir(studioKeys, { mode: 0o700 });
    for (const role of ['snapshot', 'timestamp']) await fs.cp(path.join(keysDir, role), path.join(studioKeys, role), { recursive: true });

    const help = await otaRepo(['delegate', '--help']);
    expect(help.stdout).toContain('--product <name>');
    expect(help.stdout).toContain('--key-out <dir>');
    const made = await otaRepo([...offline, 'delegate', '--product', 'robot-ai', '--expires', '30d', '--key-out', studioKeys]);
    expect(made.code, made.stderr).toBe(0);
    expect(made.stdout).toContain('created delegated role product-robot-ai for robot-ai/* until');
    const listed = JSON.parse((await otaRepo([...studio, '--json', 'delegations'])).stdout) as Array<{ role: string; paths: string[] }>;
    expect(listed).toMatchObject([{ role: 'product-robot-ai', paths: ['robot-ai/*'] }]);

    await writeTarGz(path.join(dir, 'pkg.tar.gz'), [{ name: 'VERSION', content: '1.0.0\n' }]);
    const added = await otaRepo([...studio, 'add', '--product', 'robot-ai', '--version', '1.0.0', '--package', path.join(dir, 'pkg.tar.gz'), '--publish']);
    expect(added.code, added.stderr).toBe(0);
    // A product outside the delegation, with no top-level targets key here: refused before anything is stored.
    await writeTarGz(path.join(dir, 'v.tar.gz'), [{ name: 'VERSION', content: '2.0.0\n' }]);
    const before = (await fs.readdir(path.join(repoDir, 'metadata'))).sort();
    const outside = await otaRepo([...studio, 'add', '--product', 'vacuum', '--version', '2.0.0', '--package', path.join(dir, 'v.tar.gz'), '--publish']);
    expect(outside.code).toBe(1);
    expect(outside.stderr.trim().split('\n')).toHaveLength(1);
    expect(outside.stderr).toContain('ota-repo: PUBLISH_OUTSIDE_DELEGATION:');
    expect((await fs.readdir(path.join(repoDir, 'metadata'))).sort()).toEqual(before);
    expect(await fs.readdir(path.join(repoDir, 'targets'))).toEqual(['robot-ai']);

    const verified = await otaRepo([...offline, 'verify']);
    expect(verified.stdout, verified.stderr).toContain('repository OK');
    expect(verified.stdout).toContain('latest robot-ai');
    const rotated = await otaRepo([...offline, 'delegate', '--product', 'robot-ai', '--key-out', studioKeys]);
    expect(rotated.stdout).toContain('rotated delegated role product-robot-ai');
    expect(rotated.stdout).toContain('3 target(s) signed again with the new key');
    expect((await otaRepo([...offline, 'verify'])).stdout).toContain('repository OK');
  }, 120_000);
});
