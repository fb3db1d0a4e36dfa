import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readClientConfig } from '../../../src/config/client-config.js';
import { loadConfig } from '../../../src/config/load.js';
import { isOtaError } from '../../../src/core/errors.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'otad-client-config-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const write = (text: string): string => {
  const file = join(dir, 'config.yaml');
  writeFileSync(file, text);
  return file;
};

describe("otactl's light read of the configuration", () => {
  it('finds the same state folder, database, API address, tokens file and D-Bus service as the full loader', async () => {
    const path = write(`environment: test\npaths:\n  stateDir: ${dir}/state\napi:\n  host: "::1"\n  port: 7790\n  tokensFile: ${dir}/tokens.yaml\ndbus:\n  enabled: true\n  bus: unix:path=${dir}/bus\nproducts:\n  - name: robot-ai\n    installPath: ${dir}/opt/robot-ai\n`);
    const full = loadConfig({ path, env: {} });
    const light = await readClientConfig({ path, env: {} });
    expect(light).toEqual({
      source: path,
      paths: { stateDir: full.paths.stateDir, database: full.paths.database },
      api: { host: full.api.host, port: full.api.port, tokensFile: full.api.tokensFile },
      dbus: { enabled: true, bus: `unix:path=${dir}/bus`, name: full.dbus.name },
    });
  });

  it.skipIf(existsSync('/etc/ota/config.yaml'))('applies the defaults when the default file is missing, and environment overrides like the daemon', async () => {
    const light = await readClientConfig({ path: undefined, env: {}, allowMissingDefault: true });
    expect(light).toEqual({ source: null, paths: { stateDir: '/var/lib/ota', database: '/var/lib/ota/otad.db' }, api: { host: '127.0.0.1', port: 7780, tokensFile: '/etc/ota/tokens.yaml' }, dbus: { enabled: false, bus: 'system', name: 'io.otad.Daemon1' } });
    const path = write(`paths:\n  stateDir: ${dir}/state\n`);
    const overridden = await readClientConfig({ path, env: { OTA_API__PORT: '7791', OTA_PATHS__DATABASE: `${dir}/other.db` } });
    expect(overridden.api.port).toBe(7791);
    expect(overridden.paths.database).toBe(`${dir}/other.db`);
  });

  it('leaves keys it does not use to the daemon, but reports a key it uses with the wrong type in the validator’s words', async () => {
    const unrelated = write(`logging:\n  level: loud\napi:\n  port: 7792\n`);
    expect((await readClientConfig({ path: unrelated, env: {} })).api.port).toBe(7792);
    const wrong = write(`api:\n  port: "seventy"\n`);
    const error = await readClientConfig({ path: wrong, env: {} }).catch((e: unknown) => e);
    expect(isOtaError(error) && error.code).toBe('CONFIG_INVALID');
    expect((error as Error).message).toContain('api.port = "seventy"');
  });
});
