/**
 * otactl watch's progress through a real update: ota-repo publishes a 12 MiB release, ota-server
 * serves it, a real otad (real steps) downloads, backs up and unpacks it. In a pipe the watch
 * prints a line per step and per tenth of progress (in MiB, with rate and time left), not one per
 * progress message; a `--json` watch of the same run shows how many messages there were. In a
 * terminal (a pseudo-terminal from script(1)) it draws bars with the same figures.
 */
import { spawn } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPackage } from '../../../src/package/create.js';
import { startFleet, type Fleet } from '../../support/fleet-e2e.js';
import { OTACTL, spawnOtactl, type OtactlProcess } from './otactl-process.js';

let fleet: Fleet;
const env = () => ({ OTA_CONFIG: fleet.sandbox.configPath });

async function eventually(probe: () => boolean | Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function publish(version: string, megabytes: number): Promise<void> {
  const tree = join(fleet.dir, `src-${version}`);
  mkdirSync(join(tree, 'bin'), { recursive: true });
  mkdirSync(join(tree, 'models'), { recursive: true });
  writeFileSync(join(tree, 'VERSION'), `${version}\n`);
  writeFileSync(join(tree, 'bin/robot-ai'), `#!/bin/sh\necho ${version}\n`, { mode: 0o755 });
  // Random bytes: gzip cannot shrink them, so the download is as large as the release.
  writeFileSync(join(tree, 'models/weights.bin'), randomFillSync(Buffer.alloc(megabytes << 20)));
  const file = join(fleet.dir, `robot-ai-${version}.tar.gz`);
  await createPackage(tree, file, { level: 1 });
  await fleet.publish(version, file);
}

/** CHECK_NOW and wait for the offer, so a watch started now sees the whole install. */
async function offer(version: string): Promise<void> {
  expect((await spawnOtactl(['check'], env()).done).code).toBe(0);
  await eventually(async () => {
    const s = await fleet.status();
    return s.state === 'awaitingChoice' && s.offeredVersion === version;
  }, `the offer of ${version}`);
}

const watching = async (w: OtactlProcess) => eventually(() => w.err().includes('watching otad') && w.out().includes('awaitingChoice'), 'watch to show the offer', 30_000);

beforeAll(async () => {
  fleet = await startFleet();
}, 120_000);
afterAll(async () => fleet?.close());

describe('otactl watch progress in a real update', () => {
  it('in a pipe prints one line per step and per tenth of progress, in MiB with rate and time left', async () => {
    await publish('1.1.0', 12);
    await offer('1.1.0');
    const text = spawnOtactl(['watch', '--until', 'idle', '--timeout', '120s'], env());
    const json = spawnOtactl(['--json', 'watch', '--until', 'idle', '--timeout', '120s'], env());
    await watching(text);
    await watching(json);
    expect((await spawnOtactl(['update-now'], env()).done).code).toBe(0);
    const [t, j] = [await text.done, await json.done];
    expect(t.code).toBe(0);
    expect(j.code).toBe(0);
    expect(t.stdout).toContain('commit → idle');

    const messages = j.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { type: string; payload: { step?: string } })
      .filter((m) => m.type === 'progress' && m.payload.step === 'download');
    const lines = t.stdout.split('\n').filter((l) => / robot-ai: download /.test(l));
    // The daemon sent many progress messages for the download; the pipe got a handful of lines.
    expect(messages.length).toBeGreaterThan(11);
    expect(lines.length).toBeGreaterThanOrEqual(2);
    expect(lines.length).toBeLessThanOrEqual(11);
    for (const l of lines) expect(l).toMatch(/ robot-ai: download \d+% \d+\.\d\/12\.\d MiB( at \d+\.\d MiB\/s)?(, \S+ left)?$/);
    expect(lines.at(-1)).toMatch(/download 100% 12\.\d\/12\.\d MiB at \d+\.\d MiB\/s, 0s left$/);
    const percents = lines.map((l) => Number(/download (\d+)%/.exec(l)?.[1]));
    expect(percents).toEqual([...percents].sort((a, b) => a - b));
    expect(new Set(percents.map((p) => Math.floor(p / 10))).size).toBe(percents.length);
    // The unpacking step: its start and its end, each with what it was doing.
    expect(t.stdout).toMatch(/robot-ai: extract 0% 0\.0\/\d+\.\d MiB \(unpacking \d+ entries\)/);
    expect(t.stdout).toMatch(/robot-ai: extract 100% \d+\.\d\/\d+\.\d MiB \(unpacked and verified( against the signed tree index)?\)/);
  }, 180_000);

  it.runIf(existsSync('/usr/bin/script'))('in a terminal draws a bar per step with MiB, rate and time left', async () => {
    await publish('1.2.0', 12);
    await offer('1.2.0');
    // script(1) gives the watch a pseudo-terminal for stdout and stderr, as a shell in a terminal would.
    const command = `"${process.execPath}" "${OTACTL}" watch --until idle --timeout 120s`;
    const child = spawn('/usr/bin/script', ['-qefc', command, '/dev/null'], { env: { ...process.env, ...env(), COLUMNS: '160' }, stdio: ['pipe', 'pipe', 'pipe'] });
    let screen = '';
    child.stdout.on('data', (c: Buffer) => (screen += c.toString()));
    const closed = new Promise<number | null>((res) => child.on('close', (code) => res(code)));
    await eventually(() => screen.includes('awaitingChoice'), 'watch to show the offer', 30_000);
    expect((await spawnOtactl(['update-now'], env()).done).code).toBe(0);
    expect(await closed).toBe(0);
    expect(screen).toContain('commit → idle');
    expect(screen).toMatch(/robot-ai download \[[█░]+\] 100% 12\.\d\/12\.\d MiB {2}\d+\.\d MiB\/s {2}0s left/);
    // No line per message in a terminal: the bar redraws in place.
    expect(screen).not.toMatch(/robot-ai: download \d+%/);
  }, 180_000);
});
