import { describe, expect, it } from 'vitest';
import { applyEnvOverrides, buildConfig } from '../../../src/config/load.js';
import { diffConfig } from '../../../src/config/reload.js';
import { parseDuration } from '../../../src/core/duration.js';
import { OtaError } from '../../../src/core/errors.js';

const product = { name: 'robot-ai', installPath: '/opt/robot-ai' };

function invalid(raw: Record<string, unknown>, env: NodeJS.ProcessEnv = {}): OtaError {
  try {
    buildConfig(raw, { env, source: 'test.yaml' });
  } catch (error) {
    expect(error).toBeInstanceOf(OtaError);
    return error as OtaError;
  }
  throw new Error('expected the configuration to be refused');
}

describe('configuration', () => {
  it('gives every key a default', () => {
    const c = buildConfig({});
    expect(c.environment).toBe('production');
    expect(c.paths.stateDir).toBe('/var/lib/ota');
    expect(c.paths.database).toBe('/var/lib/ota/otad.db');
    expect(c.paths.backupDir).toBe('/var/lib/ota/backups');
    expect(c.api.host).toBe('127.0.0.1');
    expect(c.schedule.checkAt).toBe('03:00');
    expect(c.decision.choiceTimeout).toBe(24 * 3_600_000);
    expect(c.products).toEqual([]);
  });

  it('selects the endpoint of the named environment, and server.url overrides it', () => {
    expect(buildConfig({ environment: 'staging' }).server.url).toBe('https://ota-staging.example.invalid');
    expect(buildConfig({ environment: 'staging', server: { url: 'https://ota.local' } }).server.url).toBe('https://ota.local');
    expect(buildConfig({ environment: 'simulation' }).simulation).toBe(true);
  });

  it('refuses a bad value with a message naming the key, the value and what was expected', () => {
    const e = invalid({ api: { port: 'eighty' }, products: [{ name: 'robot-ai', installPath: 'opt/robot-ai' }] });
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.message).toContain('api.port = "eighty"');
    expect(e.message).toContain('expected number');
    expect(e.message).toContain('products[0].installPath = "opt/robot-ai": expected an absolute path');
    expect(e.message).toContain('test.yaml');
  });

  it('refuses an unknown environment, a bad time and a bad duration', () => {
    expect(invalid({ environment: 'qa' }).message).toMatch(/environment = "qa".*production/);
    expect(invalid({ schedule: { checkAt: '3am' } }).message).toMatch(/schedule.checkAt = "3am".*HH:MM/);
    expect(invalid({ decision: { choiceTimeout: 'soon' } }).message).toMatch(/decision.choiceTimeout = "soon".*"24h"/);
    expect(invalid({ schedule: { timeZone: 'Mars/Olympus' } }).message).toMatch(/IANA time zone/);
  });

  it('refuses two products with the same name', () => {
    expect(invalid({ products: [product, product] }).message).toMatch(/two entries named "robot-ai"/);
  });

  it('takes overrides from OTA_ environment variables, typed as YAML scalars', () => {
    const c = buildConfig({}, { env: { OTA_SERVER__URL: 'https://override.example', OTA_API__PORT: '8088', OTA_PATHS__STATE_DIR: '/srv/ota', OTA_SIMULATION: 'true' } });
    expect(c.server.url).toBe('https://override.example');
    expect(c.api.port).toBe(8088);
    expect(c.paths.stateDir).toBe('/srv/ota');
    expect(c.paths.database).toBe('/srv/ota/otad.db');
    expect(c.simulation).toBe(true);
  });

  it('applies environment overrides into product entries by index', () => {
    const doc: Record<string, unknown> = { products: [{ ...product }] };
    applyEnvOverrides(doc, { OTA_PRODUCTS__0__CHANNEL: 'beta' });
    expect((doc.products as Array<Record<string, unknown>>)[0]!.channel).toBe('beta');
  });

  it('fills a product from its type template, the product winning', () => {
    const c = buildConfig({ products: [{ ...product, type: 'robot-ai', preservedPaths: ['data'] }] });
    const p = c.products[0]!;
    expect(p.services).toContain('robot-ai-core.service');
    expect(p.preservedPaths).toEqual(['data']);
    expect(p.precheck.minBatteryPercent).toBe(40);
    expect(p.releasesDir).toBe('/opt/.otad/robot-ai/releases');
  });

  it('names the known product types when a type is unknown', () => {
    expect(invalid({ products: [{ ...product, type: 'vacuum' }] }).message).toMatch(/robot-ai, robot-ai-sibling/);
  });

  it('lets a product inherit the global schedule and decision and override parts of them', () => {
    const c = buildConfig({
      schedule: { timeZone: 'Europe/Berlin', checkAt: '02:00' },
      decision: { defaultChoice: 'UPDATE_NOW' },
      products: [{ ...product, schedule: { checkAt: '04:30' } }],
    });
    expect(c.products[0]!.schedule).toMatchObject({ timeZone: 'Europe/Berlin', checkAt: '04:30' });
    expect(c.products[0]!.decision.defaultChoice).toBe('UPDATE_NOW');
  });

  it('reports what changed between two configurations as dotted keys, products by name', () => {
    const a = buildConfig({ products: [product] });
    const b = buildConfig({ products: [{ ...product, channel: 'beta' }], logging: { level: 'debug' } });
    expect(diffConfig(a, b)).toEqual(['logging.level', `products.${product.name}.channel`]);
    expect(diffConfig(a, a)).toEqual([]);
  });

  it('parses durations with units', () => {
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('1.5h')).toBe(5_400_000);
    expect(parseDuration(250)).toBe(250);
    expect(() => parseDuration('-1s')).toThrow(/duration/);
  });
});
