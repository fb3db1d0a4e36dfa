/**
 * The pieces an apply step is built from (release store, journal, service manager), composed
 * the way the daemon composes them, killed after every step, and recovered from the disk alone.
 */
import { readFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { createApplyJournal, resolveInterrupted, type ApplyJournal } from '../../../src/release/journal.js';
import { createReleaseStore, type ReleaseStore } from '../../../src/release/layout.js';
import { createProcessServiceManager } from '../../../src/services/process-manager.js';
import { startAll, stopAll, type ServiceManager } from '../../../src/services/service-manager.js';

let root: string;
const units = ['robot-ai.service'];

beforeEach(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'otad-apply-'));
});
afterEach(async () => {
  await world().services.stop('robot-ai.service').catch(() => {});
  await fs.rm(root, { recursive: true, force: true });
});

/** A fresh set of adapters over the same disk: what a restarted daemon builds. */
function world(): { store: ReleaseStore; journal: ApplyJournal; services: ServiceManager } {
  const installPath = path.join(root, 'opt', 'robot-ai');
  return {
    store: createReleaseStore({ product: 'robot-ai', installPath, releasesDir: path.join(root, 'opt', '.otad', 'robot-ai', 'releases'), logger: silentLogger }),
    journal: createApplyJournal({ dir: path.join(root, 'state', 'journal'), product: 'robot-ai', clock: new ManualClock(0), logger: silentLogger }),
    services: createProcessServiceManager({
      units: [{ name: 'robot-ai.service', command: ['sleep', '60'], cwd: root }],
      stateDir: path.join(root, 'state', 'services'),
      logger: silentLogger,
      stopTimeoutMs: 2000,
    }),
  };
}

async function release(dir: string, version: string): Promise<void> {
  await fs.mkdir(path.join(dir, 'config'), { recursive: true });
  await fs.writeFile(path.join(dir, 'VERSION'), `${version}\n`);
  await fs.writeFile(path.join(dir, 'config', 'robot.yaml'), `shipped-by: ${version}\n`);
}

const STEPS = ['prepared', 'services-stopped', 'renamed', 'switched', 'services-started'] as const;
type Step = (typeof STEPS)[number];
class Crash extends Error {}

/** The forward path of an apply, "killed" right after `crashAfter`. */
async function apply(crashAfter: Step | null): Promise<void> {
  const { store, journal, services } = world();
  const cut = (step: Step): void => {
    if (step === crashAfter) throw new Crash(step);
  };
  const from = (await store.current()) as { version: string; dir: string };
  const staged = path.join(root, 'staging', '2.0.0');
  await release(staged, '2.0.0');
  const to = await store.importStaged(staged, '2.0.0');
  await store.preserve(['config'], from.dir, to.dir);
  await journal.begin({ runId: 'run-7', from: from.version, to: '2.0.0' });
  cut('prepared');
  await stopAll(services, units, silentLogger);
  await journal.write('services-stopped');
  cut('services-stopped');
  await store.switchTo('2.0.0');
  cut('renamed');
  await journal.write('switched');
  cut('switched');
  await startAll(services, units, silentLogger);
  await journal.write('services-started');
  cut('services-started');
  await journal.write('done');
}

/** Recovery that rolls forward from the disk: what the daemon's recovery would do for 'finish'. */
async function recoverForward(): Promise<string> {
  const { store, journal, services } = world();
  await store.recover();
  const decision = resolveInterrupted(await journal.read(), (await store.current())?.version ?? null);
  if (decision.kind === 'not-switched') {
    if (!decision.servicesMayBeDown) await stopAll(services, units, silentLogger);
    await store.switchTo(decision.to);
    await journal.write('switched');
  }
  if (decision.kind === 'not-switched' || (decision.kind === 'switched' && decision.servicesMayBeDown)) {
    await startAll(services, units, silentLogger);
    await journal.write('services-started');
  }
  await journal.clear();
  return decision.kind;
}

describe('apply killed after each step', () => {
  for (const step of STEPS) {
    it(`after "${step}" the link is on one complete release and recovery finishes on the new one`, async () => {
      const first = world();
      await release(path.join(root, 'opt', 'robot-ai'), '1.0.0');
      await first.store.adopt('1.0.0');
      await fs.writeFile(path.join(root, 'opt', 'robot-ai', 'config', 'robot.yaml'), 'robot-name: r2\n');
      await startAll(first.services, units, silentLogger);

      await expect(apply(step)).rejects.toBeInstanceOf(Crash);
      const version = readFileSync(path.join(root, 'opt', 'robot-ai', 'VERSION'), 'utf8').trim();
      expect(['1.0.0', '2.0.0']).toContain(version);

      const kind = await recoverForward();
      expect(kind).toBe(['prepared', 'services-stopped'].includes(step) ? 'not-switched' : 'switched');
      const after = world();
      expect(await after.store.current()).toMatchObject({ version: '2.0.0' });
      expect(readFileSync(path.join(root, 'opt', 'robot-ai', 'config', 'robot.yaml'), 'utf8')).toBe('robot-name: r2\n');
      expect(await after.services.isActive('robot-ai.service')).toBe(true);
      expect(await after.journal.read()).toBeNull();
    });
  }
});
