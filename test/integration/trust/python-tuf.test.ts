/**
 * An independent TUF client reads what `ota-repo` writes: python-tuf's ngclient (vendored,
 * test/vendor/python-tuf) against a repository served by a spawned `ota-server` on loopback. The
 * repository is made with the CLI as a publisher makes it: a delegated role for the product
 * (`product-robot-ai`, paths `robot-ai/*`), a second for its beta channel with two keys and a
 * threshold of two (`product-robot-ai~beta`, paths `robot-ai/beta/*`), a release published with
 * each, consistent snapshots. Checked:
 *  - python-tuf refreshes (root, timestamp, snapshot, targets) and finds, downloads and verifies
 *    both releases through their delegations; a name nobody signed is not found;
 *  - a delegated role's metadata with a signature changed after signing is refused (by its hash in
 *    the snapshot, before its signatures are looked at), not followed;
 *  - after `ota-repo undelegate` of the beta channel, python-tuf still accepts the repository (the
 *    snapshot keeps listing the removed role, as the specification asks, 5.5.5) and no longer finds
 *    what that role signed.
 * python-tuf needs python3 with requests and cryptography (Debian's python3-requests and
 * python3-cryptography, installed by .ci/run); without them the test is skipped, saying so, except
 * in CI where they are expected.
 */
import { execFile, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, cpSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../support/otad-process.js';
import { otaRepo, spawnOtaServer, type SpawnedServer } from '../../support/fleet-e2e.js';
import { makeTempDir } from '../../support/tuf-repo.js';

const run = promisify(execFile);
const PYTHON = '/usr/bin/python3';
const VENDOR = join(REPO_ROOT, 'test/vendor/python-tuf');
const CLIENT = join(REPO_ROOT, 'test/support/python-tuf-client.py');
const probe = spawnSync(PYTHON, ['-c', 'import requests, cryptography, tuf.ngclient'], { env: { ...process.env, PYTHONPATH: VENDOR, PYTHONDONTWRITEBYTECODE: '1' }, encoding: 'utf8' });
const havePython = probe.status === 0;
const why = probe.error ? `${PYTHON} is missing` : (probe.stderr ?? '').trim().split('\n').at(-1) ?? 'unknown';
if (!havePython && process.env.CI !== 'true') console.warn(`python-tuf interoperability test skipped: ${why} (apt-get install -y python3-requests python3-cryptography)`);

interface Found {
  target: string;
  found?: boolean;
  length?: number;
  sha256?: string;
  error?: string;
  message?: string;
}
interface ClientAnswer {
  refresh: string;
  message?: string;
  targets?: Found[];
}

async function pythonTuf(base: string, root: string, targets: string[]): Promise<ClientAnswer> {
  const r = await run(PYTHON, [CLIENT, base, root, ...targets], { env: { ...process.env, PYTHONPATH: VENDOR, PYTHONDONTWRITEBYTECODE: '1' }, timeout: 60_000 }).catch(
    (e: { stdout?: string; stderr?: string }) => {
      if (e.stdout?.trim()) return { stdout: e.stdout, stderr: e.stderr ?? '' };
      throw new Error(`python-tuf client failed: ${e.stderr ?? String(e)}`);
    },
  );
  return JSON.parse(r.stdout.trim().split('\n').at(-1) as string) as ClientAnswer;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe.skipIf(!havePython && process.env.CI !== 'true')('python-tuf reads the repositories ota-repo writes', () => {
  let dir: string;
  let repo: string[];
  let server: SpawnedServer;
  const pkg: Record<string, Buffer> = {};

  beforeAll(async () => {
    if (!havePython) throw new Error(`python-tuf cannot run here: ${why}; .ci/run installs python3-requests and python3-cryptography`);
    dir = await makeTempDir('otad-python-tuf-');
    repo = ['--repo', join(dir, 'repo'), '--keys', join(dir, 'keys')];
    const ok = async (args: string[]) => {
      const r = await otaRepo([...repo, ...args]);
      if (r.code !== 0) throw new Error(`ota-repo ${args.join(' ')}: ${r.stderr}`);
      return r;
    };
    await ok(['init']);
    await ok(['delegate', '--product', 'robot-ai']);
    await ok(['delegate', '--product', 'robot-ai', '--channel', 'beta', '--key-count', '2', '--threshold', '2']);
    for (const [version, channel] of [['1.1.0', 'stable'], ['2.0.0', 'beta']] as const) {
      const src = join(dir, `src-${version}`);
      mkdirSync(join(src, 'bin'), { recursive: true });
      writeFileSync(join(src, 'VERSION'), `${version}\n`);
      writeFileSync(join(src, 'bin/robot-ai'), `#!/bin/sh\necho ${version}\n`);
      chmodSync(join(src, 'bin/robot-ai'), 0o755);
      await ok(['add', '--product', 'robot-ai', '--version', version, '--channel', channel, '--source', src]);
      await ok(['publish', '--role', channel === 'beta' ? 'product-robot-ai~beta' : 'product-robot-ai']);
    }
    const targetsDir = join(dir, 'repo/targets/robot-ai');
    for (const [name, folder] of [['robot-ai-1.1.0.tar.gz', targetsDir], ['robot-ai-2.0.0.tar.gz', join(targetsDir, 'beta')]] as const) {
      const file = readdirSync(folder).find((f) => f.endsWith(`.${name}`)) as string;
      pkg[name] = readFileSync(join(folder, file));
    }
    server = await spawnOtaServer(repo);
  }, 180_000);
  afterAll(async () => {
    await server?.stop();
  });

  it('refreshes, and finds, downloads and verifies each release through its delegation (threshold 2 for the channel)', async () => {
    const answer = await pythonTuf(server.url, join(dir, 'repo/metadata/1.root.json'), ['robot-ai/robot-ai-1.1.0.tar.gz', 'robot-ai/beta/robot-ai-2.0.0.tar.gz', 'robot-ai/robot-ai-9.9.9.tar.gz']);
    expect(answer.refresh, answer.message).toBe('ok');
    expect(answer.targets).toEqual([
      { target: 'robot-ai/robot-ai-1.1.0.tar.gz', found: true, length: pkg['robot-ai-1.1.0.tar.gz']!.length, sha256: sha(pkg['robot-ai-1.1.0.tar.gz']!) },
      { target: 'robot-ai/beta/robot-ai-2.0.0.tar.gz', found: true, length: pkg['robot-ai-2.0.0.tar.gz']!.length, sha256: sha(pkg['robot-ai-2.0.0.tar.gz']!) },
      { target: 'robot-ai/robot-ai-9.9.9.tar.gz', found: false },
    ]);
  }, 120_000);

  it("refuses a delegated role's metadata whose signature was changed after signing, and does not follow it", async () => {
    // A copy of the repository with one signature of the beta role's newest metadata changed.
    const copy = join(dir, 'tampered');
    cpSync(join(dir, 'repo'), copy, { recursive: true });
    const metadata = join(copy, 'metadata');
    const newest = readdirSync(metadata)
      .filter((f) => /^\d+\.product-robot-ai~beta\.json$/.test(f))
      .sort((a, b) => Number.parseInt(b, 10) - Number.parseInt(a, 10))[0] as string;
    // Same length, one signature's first hex digit changed: only the bytes differ.
    const text = readFileSync(join(metadata, newest), 'utf8');
    const m = /"sig":\s*"/.exec(text);
    expect(m).not.toBeNull();
    const at = (m?.index ?? 0) + (m?.[0].length ?? 0);
    writeFileSync(join(metadata, newest), text.slice(0, at) + (text[at] === '0' ? '1' : '0') + text.slice(at + 1));
    const tampered = await spawnOtaServer(['--repo', copy, '--keys', join(dir, 'keys')]);
    try {
      const answer = await pythonTuf(tampered.url, join(dir, 'repo/metadata/1.root.json'), ['robot-ai/beta/robot-ai-2.0.0.tar.gz', 'robot-ai/robot-ai-1.1.0.tar.gz']);
      expect(answer.refresh, answer.message).toBe('ok');
      const [beta, stable] = answer.targets as Found[];
      // Refused either by its length and hash in the snapshot or by its signatures: never found.
      expect(beta?.found).not.toBe(true);
      expect(beta?.error, JSON.stringify(beta)).toMatch(/RepositoryError|UnsignedMetadataError|BadVersionNumberError|LengthOrHashMismatchError/);
      expect(stable).toMatchObject({ found: true });
    } finally {
      await tampered.stop();
    }
  }, 120_000);

  it('after undelegate, still accepts the repository and no longer finds what the removed role signed', async () => {
    const removed = await otaRepo([...repo, 'undelegate', '--product', 'robot-ai', '--channel', 'beta']);
    expect(removed.code, removed.stderr).toBe(0);
    const answer = await pythonTuf(server.url, join(dir, 'repo/metadata/1.root.json'), ['robot-ai/beta/robot-ai-2.0.0.tar.gz', 'robot-ai/robot-ai-1.1.0.tar.gz']);
    expect(answer.refresh, answer.message).toBe('ok');
    expect(answer.targets?.map((t) => [t.target, t.found ?? t.error])).toEqual([
      ['robot-ai/beta/robot-ai-2.0.0.tar.gz', false],
      ['robot-ai/robot-ai-1.1.0.tar.gz', true],
    ]);
  }, 120_000);
});
