import { describe, expect, it } from 'vitest';
import { buildConfig, type ConfigIssue } from '../../../src/config/load.js';
import { closestKey, editDistance } from '../../../src/config/unknown-keys.js';
import { OtaError } from '../../../src/core/errors.js';

const product = { name: 'robot-ai', installPath: '/opt/robot-ai' };

function refused(raw: Record<string, unknown>, env: NodeJS.ProcessEnv = {}): OtaError {
  try {
    buildConfig(raw, { env, source: 'test.yaml' });
  } catch (error) {
    expect(error).toBeInstanceOf(OtaError);
    return error as OtaError;
  }
  throw new Error('expected the configuration to be refused');
}

const issuesOf = (e: OtaError) => e.details?.issues as ConfigIssue[];

describe('unknown configuration keys', () => {
  it('refuses a misspelled product key, naming its path and the closest known key', () => {
    const e = refused({ products: [{ ...product, healthCheks: [{ kind: 'unit', unit: 'robot-ai.service' }] }] });
    expect(e.code).toBe('CONFIG_UNKNOWN_KEY');
    expect(e.category).toBe('config');
    expect(e.message).toContain('products[0].healthCheks: unknown key "healthCheks"; did you mean healthChecks?');
    expect(issuesOf(e)).toEqual([
      { code: 'CONFIG_UNKNOWN_KEY', path: 'products[0].healthCheks', suggestion: 'healthChecks', message: expect.stringContaining('did you mean healthChecks?') },
    ]);
  });

  it('suggests the right key for several kinds of typo: a dropped, a doubled, a swapped letter, and snake or other case', () => {
    const cases: Array<[Record<string, unknown>, string, string]> = [
      [{ loging: { level: 'debug' } }, 'loging', 'logging'],
      [{ api: { portt: 8080 } }, 'api.portt', 'port'],
      [{ server: { retires: 3 } }, 'server.retires', 'retries'],
      [{ paths: { state_dir: '/srv/ota' } }, 'paths.state_dir', 'stateDir'],
      [{ products: [{ ...product, PreservedPaths: ['config'] }] }, 'products[0].PreservedPaths', 'preservedPaths'],
    ];
    for (const [raw, path, suggestion] of cases) {
      const e = refused(raw);
      expect(e.code, path).toBe('CONFIG_UNKNOWN_KEY');
      expect(issuesOf(e), path).toEqual([expect.objectContaining({ path, suggestion })]);
      expect(e.message, path).toContain(`${path}: unknown key`);
      expect(e.message, path).toContain(`did you mean ${suggestion}?`);
    }
  });

  it('finds unknown keys in nested sections of a product and in the second product of the list', () => {
    const e = refused({
      products: [
        product,
        { name: 'nav', installPath: '/opt/nav', probation: { windw: '5m' }, precheck: { minBateryPercent: 50 }, backup: { keep: 3, levle: 9 } },
      ],
    });
    const byPath = Object.fromEntries(issuesOf(e).map((i) => [i.path, i.suggestion]));
    expect(byPath).toEqual({
      'products[1].probation.windw': 'window',
      'products[1].precheck.minBateryPercent': 'minBatteryPercent',
      'products[1].backup.levle': 'level',
    });
  });

  it('finds unknown keys inside array items: a health check of a given kind and a process unit', () => {
    const e = refused({
      products: [
        {
          ...product,
          healthChecks: [
            { kind: 'unit', unit: 'robot-ai.service' },
            { kind: 'http', url: 'http://127.0.0.1:8080/health', expectedStatus: 204 },
          ],
          processUnits: [{ name: 'robot-ai', command: ['/usr/bin/robot-ai'], cwdir: '/opt/robot-ai' }],
        },
      ],
    });
    const byPath = Object.fromEntries(issuesOf(e).map((i) => [i.path, i.suggestion]));
    // The http member of the union is the one judged: expectStatus is its key.
    expect(byPath).toEqual({ 'products[0].healthChecks[1].expectedStatus': 'expectStatus', 'products[0].processUnits[0].cwdir': 'cwd' });
  });

  it('lists the known keys when nothing is close, and says what replaced a removed key', () => {
    const far = refused({ dbus: { colour: 'blue' } });
    expect(far.message).toContain('dbus.colour: unknown key "colour"; known keys here: enabled, bus, name');
    expect(issuesOf(far)[0]?.suggestion).toBeUndefined();
    const removed = refused({ paths: { stagingDir: '/var/lib/ota/staging' } });
    expect(removed.code).toBe('CONFIG_UNKNOWN_KEY');
    expect(removed.message).toContain('paths.stagingDir: unknown key "stagingDir": it was never used: each product stages beside its releasesDir');
  });

  it('reports unknown keys and wrong values together, every one of them, as CONFIG_INVALID', () => {
    const e = refused({ api: { port: 'eighty' }, schedule: { chekAt: '04:00' } });
    expect(e.code).toBe('CONFIG_INVALID');
    expect(issuesOf(e).map((i) => i.code).sort()).toEqual(['CONFIG_INVALID', 'CONFIG_UNKNOWN_KEY']);
    expect(e.message).toContain('api.port = "eighty"');
    expect(e.message).toContain('schedule.chekAt: unknown key "chekAt"; did you mean checkAt?');
  });

  it('refuses an unknown key that an OTA_ variable with "__" sets, and ignores OTA_ variables that are not configuration', () => {
    const e = refused({}, { OTA_SERVER__URLL: 'https://ota.example' });
    expect(issuesOf(e)).toEqual([expect.objectContaining({ path: 'server.urll', suggestion: 'url' })]);
    const c = buildConfig({}, { env: { OTA_TOKEN_FILE: '/tmp/token', OTA_PRODUCT: 'robot-ai', OTA_SIMULATION: 'true' } });
    expect(c.simulation).toBe(true);
  });

  it('measures edit distance and keeps far-fetched suggestions out', () => {
    expect(editDistance('healthcheks', 'healthchecks')).toBe(1);
    expect(editDistance('', 'abc')).toBe(3);
    expect(closestKey('colour', ['enabled', 'bus', 'name'])).toBeNull();
    expect(closestKey('stat', ['stateDir', 'database'])).toBeNull();
    expect(closestKey('databse', ['stateDir', 'database'])).toBe('database');
  });
});
