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
    const initialised = await otaRepo([...base, 'init', '--expiry', 'timestamp=2d']);
    expect(initialised.code).toBe(0);
    // init tells the publisher where the root key is and that it belongs offline.
    expect(initialised.stdout).toContain(`the root key (${path.join(keysDir, 'root')})`);
    expect(initialised.stdout).toContain('move it offline');
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

  it('delegate --channel with --key-count and --threshold, add --publish into the channel, undelegate: the removed role is refused', async () => {
    dir = await makeTempDir('otad-cli-channel-');
    const repoDir = path.join(dir, 'repo');
    const keysDir = path.join(dir, 'keys');
    const studioKeys = path.join(dir, 'studio-keys');
    const offline = ['--repo', repoDir, '--keys', keysDir];
    const studio = ['--repo', repoDir, '--keys', studioKeys];
    expect((await otaRepo([...offline, 'init'])).code).toBe(0);
    await fs.mkdir(studioKeys, { mode: 0o700 });
    for (const role of ['snapshot', 'timestamp']) await fs.cp(path.join(keysDir, role), path.join(studioKeys, role), { recursive: true });

    const help = await otaRepo(['delegate', '--help']);
    for (const option of ['--channel <name>', '--key-count <n>', '--threshold <n>']) expect(help.stdout).toContain(option);
    const undelegateHelp = await otaRepo(['undelegate', '--help']);
    expect(undelegateHelp.stdout).toContain('remove the delegated targets role of a product or of one channel of it');
    expect(undelegateHelp.stdout).toContain('--channel <name>');
    expect((await otaRepo(['--help'])).stdout).toContain('undelegate');

    const impossible = await otaRepo([...offline, 'delegate', '--product', 'robot-ai', '--key-count', '1', '--threshold', '2']);
    expect(impossible.code).toBe(1);
    expect(impossible.stderr.trim().split('\n')).toHaveLength(1);
    expect(impossible.stderr).toContain('CONFIG_INVALID: 1 delegation keys for threshold 2');
    const made = await otaRepo([...offline, 'delegate', '--product', 'robot-ai', '--channel', 'beta', '--key-count', '3', '--threshold', '2', '--key-out', studioKeys]);
    expect(made.code, made.stderr).toBe(0);
    expect(made.stdout).toContain('created delegated role product-robot-ai~beta for robot-ai/beta/* until');
    expect(made.stdout).toContain('threshold 2 of 3 keys');
    const keyFiles = (await fs.readdir(path.join(studioKeys, 'delegated', 'product-robot-ai~beta'))).sort();
    expect(keyFiles).toHaveLength(3);
    for (const f of keyFiles) expect((await fs.stat(path.join(studioKeys, 'delegated', 'product-robot-ai~beta', f))).mode & 0o777).toBe(0o600);
    const listed = JSON.parse((await otaRepo([...studio, '--json', 'delegations'])).stdout) as Array<{ role: string; paths: string[]; threshold: number; keyids: string[] }>;
    expect(listed).toMatchObject([{ role: 'product-robot-ai~beta', paths: ['robot-ai/beta/*'], threshold: 2 }]);
    expect(listed[0]!.keyids).toHaveLength(3);

    // The studio with two of the three keys publishes a beta release; it lands under robot-ai/beta/.
    await fs.rm(path.join(studioKeys, 'delegated', 'product-robot-ai~beta', keyFiles[2]!));
    await writeTarGz(path.join(dir, 'b.tar.gz'), [{ name: 'VERSION', content: '1.1.0\n' }]);
    const added = await otaRepo([...studio, '--json', 'add', '--product', 'robot-ai', '--version', '1.1.0', '--channel', 'beta', '--package', path.join(dir, 'b.tar.gz'), '--publish']);
    expect(added.code, added.stderr).toBe(0);
    const result = JSON.parse(added.stdout) as { manifestTarget: { name: string }; publish: { published: string[] } };
    expect(result.manifestTarget.name).toBe('robot-ai/beta/robot-ai-1.1.0.manifest.json');
    expect(result.publish.published).toContain('2.product-robot-ai~beta.json');
    expect((await fs.readdir(path.join(repoDir, 'targets', 'robot-ai', 'beta'))).length).toBe(3);
    // Stable is not the studio's to sign.
    await writeTarGz(path.join(dir, 's.tar.gz'), [{ name: 'VERSION', content: '1.2.0\n' }]);
    const stable = await otaRepo([...studio, 'add', '--product', 'robot-ai', '--version', '1.2.0', '--package', path.join(dir, 's.tar.gz'), '--publish']);
    expect(stable.code).toBe(1);
    expect(stable.stderr).toContain('PUBLISH_OUTSIDE_DELEGATION: this publisher may not sign releases of robot-ai on channel stable');
    expect((await otaRepo([...offline, 'verify'])).stdout).toContain('repository OK');

    const removed = await otaRepo([...offline, 'undelegate', '--product', 'robot-ai', '--channel', 'beta']);
    expect(removed.code, removed.stderr).toBe(0);
    expect(removed.stdout).toContain('removed delegated role product-robot-ai~beta (robot-ai/beta/*)');
    expect(removed.stdout).toContain('robots no longer find the 3 target(s) it signed');
    expect(JSON.parse((await otaRepo([...offline, '--json', 'delegations'])).stdout)).toEqual([]);
    const before = (await fs.readdir(path.join(repoDir, 'metadata'))).sort();
    await writeTarGz(path.join(dir, 'c.tar.gz'), [{ name: 'VERSION', content: '1.3.0\n' }]);
    const refused = await otaRepo([...studio, 'add', '--product', 'robot-ai', '--version', '1.3.0', '--channel', 'beta', '--package', path.join(dir, 'c.tar.gz'), '--publish']);
    expect(refused.code).toBe(1);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr).toContain('PUBLISH_OUTSIDE_DELEGATION: this publisher may not sign releases of robot-ai on channel beta: the repository delegates robot-ai (channel beta) to no role');
    expect((await fs.readdir(path.join(repoDir, 'metadata'))).sort()).toEqual(before);
    const again = await otaRepo([...offline, 'undelegate', '--product', 'robot-ai', '--channel', 'beta']);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('CONFIG_INVALID: the repository delegates to no role product-robot-ai~beta');
    expect((await otaRepo([...offline, 'verify'])).stdout).toContain('repository OK');
  }, 120_000);
});
