/**
 * `repositories:` of the studio configuration (ota-server --studio-config FILE), read from a real
 * YAML file: which repositories the studio may write to (path and keys), and the refusals.
 */
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { readStudioRepositories } from '../../../src/server/studio/repositories.js';

let dir: string | undefined;
afterEach(async () => {
  if (dir !== undefined) await fs.rm(dir, { recursive: true, force: true });
  dir = undefined;
});

async function config(text: string): Promise<string> {
  dir = await fs.mkdtemp(path.join(tmpdir(), 'otad-studio-config-'));
  const file = path.join(dir, 'studio.yaml');
  await fs.writeFile(file, text);
  return file;
}

describe('studio repositories configuration', () => {
  it('a repository with path and keys is writable, resolved from the file\'s folder; one without is tested only', async () => {
    const file = await config(`repositories:
  - { name: test, url: "http://127.0.0.1:8080/metadata/", trustedRoot: roots/test.json, local: true }
  - { name: staging, url: "https://staging.example/metadata/", trustedRoot: roots/staging.json, path: ../srv/staging, keys: keys/staging }
  - { name: production, url: "https://ota.example/metadata/", trustedRoot: /etc/ota/production-root.json }
`);
    const base = path.dirname(file);
    expect(readStudioRepositories(file)).toEqual([
      { name: 'test', url: 'http://127.0.0.1:8080/metadata/', trustedRoot: path.join(base, 'roots/test.json'), local: true },
      { name: 'staging', url: 'https://staging.example/metadata/', trustedRoot: path.join(base, 'roots/staging.json'), path: path.resolve(base, '../srv/staging'), keys: path.join(base, 'keys/staging') },
      { name: 'production', url: 'https://ota.example/metadata/', trustedRoot: '/etc/ota/production-root.json' },
    ]);
  });

  it('refuses path without keys, keys without path, a local repository with a path, and a path that is not text', async () => {
    const cases: Array<[string, string]> = [
      ['path: /srv/staging', 'repositories[0]: path and keys go together'],
      ['keys: /srv/keys', 'repositories[0]: path and keys go together'],
      ['local: true, path: /srv/a, keys: /srv/k', "repositories[0]: local: true is this server's own repository"],
      ['path: 7, keys: /srv/k', 'repositories[0].path = 7: expected a folder on this machine'],
    ];
    for (const [extra, message] of cases) {
      const file = await config(`repositories:\n  - { name: staging, url: "https://s.example/metadata/", trustedRoot: r.json, ${extra} }\n`);
      expect(() => readStudioRepositories(file)).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID', message: expect.stringContaining(message) }));
      await fs.rm(dir!, { recursive: true, force: true });
    }
  });
});
