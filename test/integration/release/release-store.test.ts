import { createHash } from 'node:crypto';
import { readFileSync, readlinkSync, realpathSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryLogger, silentLogger } from '../../../src/core/logger.js';
import { createReleaseStore, type ReleaseCheckpoint, type ReleaseStore } from '../../../src/release/layout.js';

let root: string;
let installPath: string;
let releasesDir: string;

beforeEach(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'otad-release-'));
  installPath = path.join(root, 'opt', 'robot-ai');
  releasesDir = path.join(root, 'opt', '.otad', 'robot-ai', 'releases');
  await fs.mkdir(path.dirname(installPath), { recursive: true });
});

afterEach(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

function store(extra: { checkpoint?: (name: ReleaseCheckpoint) => void; logger?: MemoryLogger } = {}): ReleaseStore {
  return createReleaseStore({ product: 'robot-ai', installPath, releasesDir, logger: extra.logger ?? silentLogger, ...(extra.checkpoint ? { checkpoint: extra.checkpoint } : {}) });
}

/** A release tree whose files all carry the version, plus a manifest of their hashes. */
async function writeRelease(dir: string, version: string): Promise<void> {
  await fs.mkdir(path.join(dir, 'bin'), { recursive: true });
  await fs.mkdir(path.join(dir, 'config'), { recursive: true });
  const files: Record<string, string> = {
    VERSION: `${version}\n`,
    'bin/robot-ai': `#!/bin/sh\necho ${version}\n`.repeat(50),
    'config/defaults.yaml': `version: ${version}\n`,
  };
  const hashes: Record<string, string> = {};
  for (const [rel, content] of Object.entries(files)) {
    await fs.writeFile(path.join(dir, rel), content);
    hashes[rel] = createHash('sha256').update(content).digest('hex');
  }
  await fs.writeFile(path.join(dir, 'MANIFEST.json'), JSON.stringify(hashes));
}

async function stageRelease(s: ReleaseStore, version: string): Promise<string> {
  const staged = path.join(root, 'staging', version);
  await writeRelease(staged, version);
  await s.importStaged(staged, version);
  return s.releaseDir(version);
}

class Crash extends Error {}
const crashAt = (point: ReleaseCheckpoint) => (name: ReleaseCheckpoint) => {
  if (name === point) throw new Crash(`simulated crash at ${name}`);
};

describe('release store: adoption', () => {
  it('adopts a plain install directory as a release and replaces it with a link', async () => {
    await writeRelease(installPath, '1.0.0');
    const s = store();
    expect(await s.inspect()).toEqual({ kind: 'plain-directory' });
    const result = await s.adopt('1.0.0');
    expect(result).toEqual({ version: '1.0.0', dir: path.join(releasesDir, '1.0.0'), adopted: true });
    expect((await fs.lstat(installPath)).isSymbolicLink()).toBe(true);
    expect(await s.current()).toEqual({ version: '1.0.0', dir: path.join(releasesDir, '1.0.0') });
    expect(readFileSync(path.join(installPath, 'VERSION'), 'utf8')).toBe('1.0.0\n');
    await expect(fs.access(path.join(releasesDir, '.adopt.json'))).rejects.toThrow();
  });

  it('is a no-op on an install that is already a release link', async () => {
    await writeRelease(installPath, '1.0.0');
    await store().adopt('1.0.0');
    expect(await store().adopt('1.0.0')).toMatchObject({ version: '1.0.0', adopted: false });
  });

  it('refuses to adopt when nothing is installed', async () => {
    await expect(store().adopt('1.0.0')).rejects.toMatchObject({ code: 'APPLY_FAILED' });
  });

  const points: ReleaseCheckpoint[] = ['adopt:intent-written', 'adopt:moved', 'adopt:temp-link', 'adopt:linked'];
  for (const point of points) {
    it(`finishes an adoption interrupted at ${point} on the next start`, async () => {
      await writeRelease(installPath, '1.0.0');
      await expect(store({ checkpoint: crashAt(point) }).adopt('1.0.0')).rejects.toBeInstanceOf(Crash);

      // The daemon restarts: recover() decides from the disk alone (the version comes from the intent).
      const s = store();
      const { adopted } = await s.recover();
      expect(adopted?.version).toBe('1.0.0');
      expect(await s.inspect()).toMatchObject({ kind: 'release-link', version: '1.0.0' });
      expect(readFileSync(path.join(installPath, 'VERSION'), 'utf8')).toBe('1.0.0\n');
      const leftovers = (await fs.readdir(path.dirname(installPath))).filter((n) => n.includes('.tmp-'));
      expect(leftovers).toEqual([]);
      expect(await fs.readdir(releasesDir)).toEqual(['1.0.0']);
    });
  }

  it('finishes an interrupted adoption under its original version even if asked for another', async () => {
    await writeRelease(installPath, '1.0.0');
    await expect(store({ checkpoint: crashAt('adopt:moved') }).adopt('1.0.0')).rejects.toBeInstanceOf(Crash);
    const logger = new MemoryLogger();
    expect(await store({ logger }).adopt('9.9.9')).toMatchObject({ version: '1.0.0', adopted: true });
    expect(logger.lines.some((l) => l.level === 'warn' && l.message.includes('interrupted adoption'))).toBe(true);
  });
});

describe('release store: import, switch, prune', () => {
  it('imports a staged tree by rename and switches the link to it', async () => {
    const s = store();
    await stageRelease(s, '1.0.0');
    await expect(fs.access(path.join(root, 'staging', '1.0.0'))).rejects.toThrow();
    expect(await s.current()).toBeNull();
    await s.switchTo('1.0.0');
    expect(await s.current()).toMatchObject({ version: '1.0.0' });
    await stageRelease(s, '1.1.0');
    await s.switchTo('1.1.0');
    expect(readFileSync(path.join(installPath, 'VERSION'), 'utf8')).toBe('1.1.0\n');
    expect((await s.list()).map((r) => [r.version, r.current])).toEqual([
      ['1.0.0', false],
      ['1.1.0', true],
    ]);
  });

  it('treats a second import of an already imported release as done', async () => {
    const s = store();
    await stageRelease(s, '1.0.0');
    expect(await s.importStaged(path.join(root, 'staging', '1.0.0'), '1.0.0')).toMatchObject({ version: '1.0.0' });
  });

  it('never replaces the live release by an import of the same version', async () => {
    const s = store();
    await stageRelease(s, '1.0.0');
    await s.switchTo('1.0.0');
    const staged = path.join(root, 'staging', 'again');
    await writeRelease(staged, '1.0.0');
    await expect(s.importStaged(staged, '1.0.0')).rejects.toMatchObject({ code: 'APPLY_FAILED' });
  });

  it('rejects version names that are not a single safe path component', async () => {
    const s = store();
    for (const bad of ['../etc', 'a/b', '', '.hidden', '1..2']) {
      await expect(s.switchTo(bad)).rejects.toMatchObject({ code: 'APPLY_FAILED' });
    }
  });

  it('refuses to switch over a plain directory that was not adopted', async () => {
    const s = store();
    await stageRelease(s, '1.0.0');
    await writeRelease(installPath, '0.9.0');
    await expect(s.switchTo('1.0.0')).rejects.toMatchObject({ code: 'APPLY_FAILED' });
    expect(readFileSync(path.join(installPath, 'VERSION'), 'utf8')).toBe('0.9.0\n');
  });

  it('leaves the old link intact when a switch is interrupted before the rename, and cleans up after', async () => {
    const s = store();
    await stageRelease(s, '1.0.0');
    await stageRelease(s, '2.0.0');
    await s.switchTo('1.0.0');
    await expect(store({ checkpoint: crashAt('switch:temp-link') }).switchTo('2.0.0')).rejects.toBeInstanceOf(Crash);
    expect(await s.current()).toMatchObject({ version: '1.0.0' });
    const { removedTempLinks } = await store().recover();
    expect(removedTempLinks).toHaveLength(1);
  });

  it('prunes every release except the live one and the ones to keep', async () => {
    const s = store();
    for (const v of ['1.0.0', '1.1.0', '1.2.0', '2.0.0']) await stageRelease(s, v);
    await s.switchTo('1.2.0');
    expect(await s.prune(['1.1.0'])).toEqual(['1.0.0', '2.0.0']);
    expect((await s.list()).map((r) => r.version)).toEqual(['1.1.0', '1.2.0']);
    await expect(s.remove('1.2.0')).rejects.toMatchObject({ code: 'APPLY_FAILED' });
    expect(await s.remove('1.1.0')).toBe(true);
  });
});

describe('release store: preserved paths', () => {
  it('copies preserved files and directories with their modes, replacing what the release ships', async () => {
    const s = store();
    const oldDir = await stageRelease(s, '1.0.0');
    const newDir = await stageRelease(s, '2.0.0');
    await fs.writeFile(path.join(oldDir, 'config', 'robot.yaml'), 'name: r2\n');
    await fs.chmod(path.join(oldDir, 'config', 'robot.yaml'), 0o600);
    await fs.mkdir(path.join(oldDir, 'data', 'maps'), { recursive: true });
    await fs.writeFile(path.join(oldDir, 'data', 'maps', 'floor1.bin'), 'map');
    await fs.chmod(path.join(oldDir, 'data'), 0o750);
    await fs.writeFile(path.join(newDir, 'config', 'robot.yaml'), 'name: default\n');

    const logger = new MemoryLogger();
    const s2 = store({ logger });
    const result = await s2.preserve(['config/robot.yaml', 'data', 'calibration/arm.json'], oldDir, newDir);
    expect(result).toEqual({ copied: ['config/robot.yaml', 'data'], skipped: ['calibration/arm.json'] });
    expect(readFileSync(path.join(newDir, 'config', 'robot.yaml'), 'utf8')).toBe('name: r2\n');
    expect((await fs.stat(path.join(newDir, 'config', 'robot.yaml'))).mode & 0o777).toBe(0o600);
    expect((await fs.stat(path.join(newDir, 'data'))).mode & 0o777).toBe(0o750);
    expect(readFileSync(path.join(newDir, 'data', 'maps', 'floor1.bin'), 'utf8')).toBe('map');
    expect(logger.lines.some((l) => l.message.includes('missing') && l.fields.path === 'calibration/arm.json')).toBe(true);
    // Running it again (a restarted apply) gives the same tree.
    await s2.preserve(['config/robot.yaml', 'data'], oldDir, newDir);
    expect(readFileSync(path.join(newDir, 'config', 'robot.yaml'), 'utf8')).toBe('name: r2\n');
  });

  it('rejects preserved paths that leave the release, and never writes through a symlink in the new release', async () => {
    const s = store();
    const oldDir = await stageRelease(s, '1.0.0');
    const newDir = await stageRelease(s, '2.0.0');
    for (const bad of ['../x', '/etc/passwd', 'a/../../b', '.']) {
      await expect(s.preserve([bad], oldDir, newDir)).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
    }
    const outside = path.join(root, 'outside');
    await fs.mkdir(outside);
    await fs.mkdir(path.join(oldDir, 'state'));
    await fs.writeFile(path.join(oldDir, 'state', 'x'), 'x');
    await fs.symlink(outside, path.join(newDir, 'state'));
    await expect(s.preserve(['state/x'], oldDir, newDir)).rejects.toMatchObject({ code: 'APPLY_FAILED' });
    expect(await fs.readdir(outside)).toEqual([]);
  });
});

describe('release store: the switch is atomic', () => {
  it('lets a concurrent reader always resolve the install path to one complete release', async () => {
    const s = store();
    await stageRelease(s, '1.0.0');
    await stageRelease(s, '2.0.0');
    await s.switchTo('1.0.0');

    // The reader runs in its own thread so it really interleaves with the switches.
    const reader = new Worker(
      `
      const { parentPort, workerData } = require('node:worker_threads');
      const fs = require('node:fs');
      const path = require('node:path');
      const crypto = require('node:crypto');
      const files = ['VERSION', 'bin/robot-ai', 'config/defaults.yaml'];
      let reads = 0, bad = [], seen = {};
      let stop = false;
      parentPort.on('message', () => { stop = true; });
      function loop() {
        for (let i = 0; i < 200; i++) {
          reads++;
          try {
            const dir = fs.realpathSync(workerData.installPath);
            const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'MANIFEST.json'), 'utf8'));
            const version = fs.readFileSync(path.join(dir, 'VERSION'), 'utf8').trim();
            for (const f of files) {
              const h = crypto.createHash('sha256').update(fs.readFileSync(path.join(dir, f))).digest('hex');
              if (h !== manifest[f]) bad.push(dir + ':' + f);
            }
            seen[version] = (seen[version] || 0) + 1;
          } catch (e) { bad.push(String(e)); }
        }
        if (stop && reads >= workerData.minReads) parentPort.postMessage({ reads, bad: bad.slice(0, 5), badCount: bad.length, seen });
        else setImmediate(loop);
      }
      loop();
      `,
      { eval: true, workerData: { installPath, minReads: 3000 } },
    );
    const done = new Promise<{ reads: number; bad: string[]; badCount: number; seen: Record<string, number> }>((resolve, reject) => {
      reader.once('message', resolve);
      reader.once('error', reject);
    });

    for (let i = 0; i < 400; i++) await s.switchTo(i % 2 === 0 ? '2.0.0' : '1.0.0');
    reader.postMessage('stop');
    const report = await done;
    await reader.terminate();

    expect(report.badCount).toBe(0);
    expect(report.reads).toBeGreaterThanOrEqual(3000);
    expect(Object.keys(report.seen).sort()).toEqual(['1.0.0', '2.0.0']);
    expect(realpathSync(installPath)).toBe(path.join(releasesDir, '1.0.0'));
    expect(readlinkSync(installPath)).toBe(path.join(releasesDir, '1.0.0'));
  });
});
