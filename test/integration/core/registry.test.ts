import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createProductRegistry, detectProduct, RELEASE_MARKER } from '../../../src/products/registry.js';
import { buildConfig } from '../../../src/config/load.js';

const dirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'otad-registry-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const product = (installPath: string) => ({ name: 'robot-ai', installPath, versionFile: 'VERSION' });

describe('product detection', () => {
  it('reports a product that is not installed', async () => {
    expect(await detectProduct(product(join(tmp(), 'robot-ai')))).toMatchObject({ layout: 'missing', version: null });
  });

  it('reads a plain install’s version file (a leading v and trailing text tolerated)', async () => {
    const dir = join(tmp(), 'robot-ai');
    mkdirSync(dir);
    writeFileSync(join(dir, 'VERSION'), 'v2.3.1\nbuilt by CI\n');
    expect(await detectProduct(product(dir))).toMatchObject({ layout: 'plain', version: '2.3.1', versionSource: 'version-file' });
  });

  it('prefers the release marker otad writes, in the managed (symlinked) layout', async () => {
    const root = tmp();
    const release = join(root, 'releases/2.4.0');
    mkdirSync(release, { recursive: true });
    writeFileSync(join(release, 'VERSION'), '2.0.0\n');
    writeFileSync(join(release, RELEASE_MARKER), JSON.stringify({ product: 'robot-ai', version: '2.4.0', installedAt: 1, runId: 'r' }));
    symlinkSync(release, join(root, 'robot-ai'));
    expect(await detectProduct(product(join(root, 'robot-ai')))).toMatchObject({ layout: 'managed', releaseDir: release, version: '2.4.0', versionSource: 'marker' });
  });

  it('ignores a marker of another product and falls back to the version file', async () => {
    const dir = join(tmp(), 'robot-ai');
    mkdirSync(dir);
    writeFileSync(join(dir, 'VERSION'), '1.2.0\n');
    writeFileSync(join(dir, RELEASE_MARKER), JSON.stringify({ product: 'vacuum', version: '9.0.0' }));
    expect(await detectProduct(product(dir))).toMatchObject({ version: '1.2.0', versionSource: 'version-file' });
  });

  it('detects several products of one robot from configuration', async () => {
    const root = tmp();
    mkdirSync(join(root, 'robot-ai'));
    writeFileSync(join(root, 'robot-ai/VERSION'), '3.0.0\n');
    const config = buildConfig({
      products: [
        { name: 'robot-ai', type: 'robot-ai', installPath: join(root, 'robot-ai') },
        { name: 'robot-ai-telemetry', type: 'robot-ai-sibling', installPath: join(root, 'robot-ai-telemetry') },
      ],
    });
    const registry = createProductRegistry(config.products);
    expect(registry.get('robot-ai')?.services).toContain('robot-ai-core.service');
    expect((await registry.detectAll()).map((d) => [d.product, d.layout, d.version])).toEqual([
      ['robot-ai', 'plain', '3.0.0'],
      ['robot-ai-telemetry', 'missing', null],
    ]);
  });
});
