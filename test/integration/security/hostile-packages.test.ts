/**
 * Hostile but properly signed packages, end to end as the attack round ran them: each archive goes
 * to `ota-repo add … --package … --publish` (which now refuses it before signing, with the robot's
 * code), is then signed anyway through the same publisher library (an attacker with a targets key),
 * served by a spawned ota-server,
 * and a real otad is asked over REST to CHECK_NOW and UPDATE_NOW. Each must be *rejected* in the
 * sense of threats.md: a stable, non-retryable code in the API and the log, a package-rejected audit
 * entry, the installed release untouched, no staging tree or cached download left, otad running.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFleet, type Fleet } from '../../support/fleet-e2e.js';
import { longPath, writeRawNameTarGz, writeTarGz, type FixtureEntry } from '../../support/tar-fixtures.js';

let fleet: Fleet;
let installedBefore: Record<string, string>;
beforeAll(async () => {
  fleet = await startFleet();
  installedBefore = fleet.installedTree();
}, 120_000);
afterAll(async () => fleet?.close());

const version = (entries: FixtureEntry[], v: string): FixtureEntry[] => [{ name: 'VERSION', content: `${v}\n` }, { name: 'bin/', type: 'directory' }, ...entries];

interface Attack {
  title: string;
  code: string;
  build(file: string, v: string): Promise<string>;
}

const ATTACKS: Attack[] = [
  {
    title: 'a 0777 directory with 0777 and 0666 files (python tarfile keeps such modes)',
    code: 'PACKAGE_UNSAFE_MODE',
    build: (file, v) =>
      writeTarGz(file, version([{ name: 'app/', type: 'directory', mode: 0o777 }, { name: 'app/run.sh', content: '#!/bin/sh\n', mode: 0o777 }, { name: 'app/settings.py', content: 'X = 1\n', mode: 0o666 }], v)),
  },
  {
    title: 'an entry with a 300-byte name component',
    code: 'PACKAGE_UNSAFE_PATH',
    build: (file, v) => writeTarGz(file, version([{ name: `lib/${'a'.repeat(300)}`, content: 'x\n' }], v)),
  },
  {
    title: 'an entry with a 4,200-byte path',
    code: 'PACKAGE_UNSAFE_PATH',
    build: (file, v) => writeTarGz(file, version([{ name: longPath(4200), content: 'x\n' }], v)),
  },
  {
    title: 'a newline in a name',
    code: 'PACKAGE_UNSAFE_PATH',
    build: (file, v) => writeTarGz(file, version([{ name: 'bin/robot-ai\nrm -rf', content: 'x\n' }], v)),
  },
  {
    title: 'a name that is not valid UTF-8',
    code: 'PACKAGE_UNSAFE_PATH',
    build: (file) => writeRawNameTarGz(file, Buffer.from([0x62, 0x69, 0x6e, 0x5f, 0xff, 0xfe, 0x2e, 0x70, 0x79]), 'x\n'),
  },
  {
    title: "otad's own release marker .ota-release.json",
    code: 'PACKAGE_UNSAFE_PATH',
    build: (file, v) => writeTarGz(file, version([{ name: '.ota-release.json', content: '{"schema":1,"product":"robot-ai","version":"0.0.1"}\n' }], v)),
  },
  {
    title: 'a tiny package that expands past the compression-ratio cap',
    code: 'PACKAGE_TOO_LARGE',
    build: (file, v) => writeTarGz(file, version([{ name: 'zeros', zeros: 48 * 1024 * 1024 }], v)),
  },
];

describe('hostile signed packages through ota-repo, ota-server and a real otad', () => {
  ATTACKS.forEach((attack, i) => {
    it(`rejects ${attack.title} with ${attack.code}, not retryable, audited, nothing installed or left behind`, async () => {
      const v = `1.${i + 1}.0`;
      const file = await attack.build(join(fleet.dir, `attack-${v}.tar.gz`), v);
      const cli = await fleet.publishHostile(v, file);
      // The publisher's own check refuses it before signing, with the robot's code…
      expect(cli.cliCode).not.toBe(0);
      expect(cli.cliStderr).toContain(attack.code);
      // …and the robot still refuses it when it arrives properly signed anyway.
      const { status, run } = await fleet.checkAndUpdate(v);

      expect(run.outcome).toBe('failed');
      expect(run.error?.code).toBe(attack.code);
      expect(run.error?.retryable).toBe(false);
      expect(status.error?.code ?? run.error?.code).toBe(attack.code);
      expect(status.installedVersion).toBe('1.0.0');
      expect(fleet.installedTree()).toEqual(installedBefore);
      expect(fleet.leftovers()).toEqual([]);
      expect(fleet.otad.alive()).toBe(true);
      const logged = fleet.log().split('\n').filter((l) => l.includes('package rejected') && l.includes(attack.code));
      expect(logged.length, 'a log line with the code').toBeGreaterThan(0);
      const audited = fleet.audit().split('\n').filter((l) => l.includes('package-rejected') && l.includes(v) && l.includes(attack.code));
      expect(audited.length, 'an audit entry').toBe(1);
      // Retrying cannot help: the release is marked bad and not offered again.
      const again = await fleet.api('POST', '/api/v1/events', { product: 'robot-ai', type: 'CHECK_NOW' });
      expect(again.status).toBe(202);
      const after = await fleet.settled();
      expect(after.offeredVersion ?? null).toBeNull();
      expect(after.lastOutcome).toBe('up-to-date');
    }, 90_000);
  });
});
