import { describe, expect, it } from 'vitest';
import { buildConfig } from '../../../src/config/load.js';
import { metadataDirFor, repositoryUrlsFor } from '../../../src/steps/repository-factory.js';
import { stagingRootFor } from '../../../src/release/layout.js';
import { packageCachePath } from '../../../src/steps/stage.js';

const SHA = 'ab'.repeat(32);

function config(product: Record<string, unknown> = {}, server: Record<string, unknown> = {}) {
  return buildConfig({
    server: { url: 'https://ota.example.test/repo', ...server },
    paths: { stateDir: '/var/lib/ota' },
    products: [{ name: 'robot-ai', installPath: '/opt/robot-ai', ...product }],
  });
}

describe('where staging and downloads live', () => {
  it('stages beside the releases directory, per product, so apply can rename into it', () => {
    const c = config();
    expect(c.products[0]!.releasesDir).toBe('/opt/.otad/robot-ai/releases');
    expect(stagingRootFor(c.products[0]!)).toBe('/opt/.otad/robot-ai/staging/robot-ai');
    expect(stagingRootFor(config({ releasesDir: '/data/releases' }).products[0]!)).toBe('/data/staging/robot-ai');
  });

  it('names a cached package by its signed hash so a partial never meets other bytes', () => {
    expect(packageCachePath('/var/lib/ota/cache', 'robot-ai', { name: 'robot-ai/robot-ai-2.1.0.tar.gz', sha256: SHA })).toBe(
      `/var/lib/ota/cache/robot-ai/packages/${SHA.slice(0, 16)}-robot-ai-2.1.0.tar.gz`,
    );
  });
});

describe('repository URLs and metadata cache per product', () => {
  it('reads metadata and targets under the server URL by default', () => {
    const c = config();
    expect(repositoryUrlsFor(c.products[0]!, c)).toEqual({
      metadataBaseUrl: 'https://ota.example.test/repo/metadata/',
      targetBaseUrl: 'https://ota.example.test/repo/targets/',
    });
    expect(metadataDirFor(c, 'robot-ai')).toBe('/var/lib/ota/tuf/robot-ai');
  });

  it('takes a product repository URL and a separate target base (release assets) over the server', () => {
    const c = config({ repository: { url: 'http://mirror.test/', targetBaseUrl: 'https://assets.test/releases' } }, { targetBaseUrl: 'https://ignored.test/' });
    expect(repositoryUrlsFor(c.products[0]!, c)).toEqual({ metadataBaseUrl: 'http://mirror.test/metadata/', targetBaseUrl: 'https://assets.test/releases/' });
    const s = config({}, { targetBaseUrl: 'https://cdn.test/t' });
    expect(repositoryUrlsFor(s.products[0]!, s).targetBaseUrl).toBe('https://cdn.test/t/');
  });

  it('refuses a repository URL that is not a URL with CONFIG_INVALID, when the file is loaded (not at the first check)', () => {
    expect(() => config({ repository: { url: 'not a url' } })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID', message: expect.stringContaining('products[0].repository.url = "not a url": not a URL') }));
    expect(() => config({ repository: { mirrorUrl: 'file:///srv/assets/' } })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID', message: expect.stringContaining('got file:') }));
  });
});
