import { describe, expect, it } from 'vitest';
import { buildConfig } from '../../../src/config/load.js';
import { planReload } from '../../../src/config/reload.js';

const robot = { name: 'robot-ai', installPath: '/opt/robot-ai' };
const base = {
  environment: 'test',
  server: { url: 'http://127.0.0.1:1111' },
  paths: { stateDir: '/var/lib/ota' },
  products: [robot],
} as const;

describe('the reload plan', () => {
  it('applies the fleet section: check-ins restart with it and the next run\'s pre-check reads the lease settings', () => {
    const running = buildConfig(base);
    const next = buildConfig({ ...base, fleet: { checkinInterval: '5m', tags: { site: 'dock-2' }, lease: { enabled: true, ttl: '3m', unreachable: 'proceed' } } });
    const plan = planReload(running, next);
    expect(plan.changed).toEqual(['fleet.checkinInterval', 'fleet.lease.enabled', 'fleet.lease.renewEvery', 'fleet.lease.ttl', 'fleet.lease.unreachable', 'fleet.tags.site']);
    expect(plan.needsRestart).toEqual([]);
    expect(plan.effective.fleet.lease).toEqual({ enabled: true, ttl: 180_000, renewEvery: 60_000, unreachable: 'proceed' });
  });

  it('refuses a lease renewal period that is not shorter than its ttl', () => {
    expect(() => buildConfig({ ...base, fleet: { lease: { ttl: '1m', renewEvery: '1m' } } })).toThrow(/renewEvery/);
  });

  it('applies server, product and logging-level changes and lists each of them once', () => {
    const running = buildConfig(base);
    const next = buildConfig({
      ...base,
      server: { url: 'http://127.0.0.1:2222' },
      logging: { level: 'debug' },
      products: [{ ...robot, channel: 'beta', precheck: { minBatteryPercent: 80 }, probation: { window: '5s' }, services: ['robot-ai.service'] }],
    });
    const plan = planReload(running, next);
    expect(plan.changed).toEqual([
      'logging.level',
      'server.url',
      'products.robot-ai.channel',
      'products.robot-ai.precheck.minBatteryPercent',
      'products.robot-ai.probation.window',
      'products.robot-ai.services',
    ]);
    expect(plan.applied).toEqual(plan.changed);
    expect(plan.needsRestart).toEqual([]);
    expect(plan.effective.server.url).toBe('http://127.0.0.1:2222');
    expect(plan.effective.products[0]).toMatchObject({ channel: 'beta', services: ['robot-ai.service'], probation: { window: 5000 } });
  });

  it('keeps the running value of every key that needs a restart, so none is applied halfway', () => {
    const running = buildConfig(base);
    const next = buildConfig({
      ...base,
      paths: { stateDir: '/srv/ota' },
      api: { port: 9999 },
      logging: { level: 'warn', file: '/var/log/otad.log' },
      recovery: { maxRestoresPerState: 7 },
      products: [{ ...robot, installPath: '/srv/robot-ai', channel: 'beta' }, { name: 'nav', installPath: '/opt/nav' }],
    });
    const plan = planReload(running, next);
    expect(plan.needsRestart).toEqual(
      expect.arrayContaining(['api.port', 'logging.file', 'paths.stateDir', 'paths.database', 'recovery.maxRestoresPerState', 'products.nav', 'products.robot-ai.installPath']),
    );
    expect(plan.applied).toEqual(['logging.level', 'products.robot-ai.channel']);
    expect([...plan.applied, ...plan.needsRestart].sort()).toEqual([...plan.changed].sort());
    expect(plan.effective.paths).toEqual(running.paths);
    expect(plan.effective.api).toEqual(running.api);
    expect(plan.effective.recovery).toEqual(running.recovery);
    expect(plan.effective.logging).toEqual({ ...running.logging, level: 'warn' });
    expect(plan.effective.products.map((p) => p.name)).toEqual(['robot-ai']);
    expect(plan.effective.products[0]).toMatchObject({ installPath: '/opt/robot-ai', releasesDir: running.products[0]!.releasesDir, channel: 'beta' });
    // Reloading the same file again still reports the pending restart: it is still not in effect.
    expect(planReload(plan.effective, next).needsRestart).toEqual(plan.needsRestart);
    expect(planReload(plan.effective, next).applied).toEqual([]);
  });

  it('keeps a removed product running as it was until a restart', () => {
    const running = buildConfig({ ...base, products: [robot, { name: 'nav', installPath: '/opt/nav' }] });
    const plan = planReload(running, buildConfig(base));
    expect(plan.needsRestart).toEqual(['products.nav']);
    expect(plan.effective.products.map((p) => p.name)).toEqual(['robot-ai', 'nav']);
  });

  it('matches products by name, so reordering them changes nothing', () => {
    const nav = { name: 'nav', installPath: '/opt/nav' };
    const running = buildConfig({ ...base, products: [robot, nav] });
    const plan = planReload(running, buildConfig({ ...base, products: [nav, robot] }));
    expect(plan.changed).toEqual([]);
    expect(plan.effective.products.map((p) => p.name)).toEqual(['robot-ai', 'nav']);
  });

  it('applies a new schedule and decision policy copied from the global defaults into each product', () => {
    const running = buildConfig(base);
    const plan = planReload(running, buildConfig({ ...base, schedule: { checkAt: '04:15' }, decision: { choiceTimeout: '2h' } }));
    expect(plan.applied).toEqual(
      expect.arrayContaining(['schedule.checkAt', 'decision.choiceTimeout', 'products.robot-ai.schedule.checkAt', 'products.robot-ai.decision.choiceTimeout']),
    );
    expect(plan.needsRestart).toEqual([]);
  });
});
