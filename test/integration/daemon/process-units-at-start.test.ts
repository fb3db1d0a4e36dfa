/**
 * otad starts a product's process units when it starts (no systemd): real processes through the
 * process service manager and its pid files, as the steps use them.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { buildConfig } from '../../../src/config/load.js';
import type { ProductConfig } from '../../../src/config/schema.js';
import { silentLogger } from '../../../src/core/logger.js';
import { startProcessUnits } from '../../../src/daemon/process-units-at-start.js';
import { createProcessServiceManager } from '../../../src/services/process-manager.js';
import type { ServiceManager } from '../../../src/services/service-manager.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface World {
  stateDir: string;
  product: ProductConfig;
  /** The same pid files otad's process manager uses. */
  units: ServiceManager;
}

function world(opts: { installed?: boolean } = {}): World {
  const dir = mkdtempSync(join(tmpdir(), 'otad-units-at-start-'));
  const stateDir = join(dir, 'state');
  const installPath = join(dir, 'opt/robot-ai');
  if (opts.installed ?? true) {
    mkdirSync(installPath, { recursive: true });
    writeFileSync(join(installPath, 'VERSION'), '1.0.0\n');
  }
  const processUnits = [
    { name: 'robot-ai-core', command: ['sleep', '300'] },
    { name: 'robot-ai-api', command: ['sleep', '301'] },
  ];
  const product = buildConfig({ products: [{ name: 'robot-ai', installPath, services: [], processUnits }] }).products[0]!;
  const units = createProcessServiceManager({ units: processUnits, stateDir: join(stateDir, 'services/robot-ai'), logger: silentLogger });
  cleanups.push(async () => {
    for (const u of processUnits) await units.stop(u.name);
    rmSync(dir, { recursive: true, force: true });
  });
  return { stateDir, product, units };
}

const run = (w: World, savedState: string | null, extra: { simulation?: boolean } = {}) =>
  startProcessUnits({ products: [w.product], stateDir: w.stateDir, simulation: extra.simulation ?? false, savedState: () => savedState, logger: silentLogger });

describe('process units at otad start', () => {
  it('starts every unit of an idle product, in order, from the installed release', async () => {
    const w = world();
    const [result] = await run(w, 'idle');
    expect(result).toEqual({ product: 'robot-ai', started: ['robot-ai-core', 'robot-ai-api'], alreadyRunning: [] });
    expect(await w.units.isActive('robot-ai-core')).toBe(true);
    expect(await w.units.isActive('robot-ai-api')).toBe(true);
  });

  it('starts only the units not already running (an earlier otad left one up)', async () => {
    const w = world();
    await w.units.start('robot-ai-core');
    const before = (await w.units.status('robot-ai-core')).active;
    const [result] = await run(w, 'scheduled');
    expect(before).toBe(true);
    expect(result).toEqual({ product: 'robot-ai', started: ['robot-ai-api'], alreadyRunning: ['robot-ai-core'] });
  });

  for (const saved of ['commit', 'idle', 'apply', 'validate']) {
    it(`starts the units again after a power cut in ${saved} (the units were killed with otad; nothing else starts them)`, async () => {
      const w = world();
      await w.units.start('robot-ai-core');
      await w.units.start('robot-ai-api');
      // The cut: every process of the product dies at once, with SIGKILL.
      for (const unit of ['robot-ai-core', 'robot-ai-api']) {
        const pid = JSON.parse(readFileSync(join(w.stateDir, 'services/robot-ai', `${unit}.pid`), 'utf8')).pid as number;
        process.kill(-pid, 'SIGKILL');
      }
      for (let i = 0; i < 400 && ((await w.units.isActive('robot-ai-core')) || (await w.units.isActive('robot-ai-api'))); i++) await new Promise((r) => setTimeout(r, 25));
      expect(await w.units.isActive('robot-ai-core')).toBe(false);
      const [result] = await run(w, saved);
      expect(result).toEqual({ product: 'robot-ai', started: ['robot-ai-core', 'robot-ai-api'], alreadyRunning: [] });
      expect(await w.units.isActive('robot-ai-core')).toBe(true);
      expect(await w.units.isActive('robot-ai-api')).toBe(true);
    });
  }

  it('starts nothing when nothing is installed', async () => {
    const w = world({ installed: false });
    const [result] = await run(w, null);
    expect(result?.skipped).toMatch(/^nothing is installed at /);
    expect(await w.units.isActive('robot-ai-core')).toBe(false);
  });

  it('starts nothing in simulation mode', async () => {
    const w = world();
    const [result] = await run(w, 'idle', { simulation: true });
    expect(result?.skipped).toBe('simulation mode');
    expect(await w.units.isActive('robot-ai-core')).toBe(false);
  });

  it('reports a unit that cannot start and does not throw: otad must still come up', async () => {
    const w = world();
    const broken = { ...w.product, processUnits: [{ name: 'robot-ai-core', command: ['/nonexistent/robot-ai'], env: {} }] };
    const [result] = await startProcessUnits({ products: [broken], stateDir: w.stateDir, simulation: false, savedState: () => 'idle', logger: silentLogger });
    expect(result?.started).toEqual([]);
    expect(result?.error).toContain('/nonexistent/robot-ai is not an executable file');
  });

  it('leaves units managed by systemd to systemd', async () => {
    const w = world();
    const calls: string[] = [];
    const systemd: ServiceManager = {
      start: async (u) => void calls.push(`start ${u}`),
      stop: async (u) => void calls.push(`stop ${u}`),
      restart: async (u) => void calls.push(`restart ${u}`),
      isActive: async () => false,
      status: async () => ({ active: false, state: 'inactive', restarts: 0 }),
    };
    const [result] = await startProcessUnits({
      products: [w.product],
      stateDir: w.stateDir,
      simulation: false,
      savedState: () => 'idle',
      logger: silentLogger,
      services: () => async () => ({ kind: 'systemctl', units: ['robot-ai.service'], manager: systemd }),
    });
    expect(result?.skipped).toBe('services are managed by systemd');
    expect(calls).toEqual([]);
  });
});
