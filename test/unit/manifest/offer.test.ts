import { describe, expect, it } from 'vitest';
import { evaluateOffer, toOffer } from '../../../src/manifest/offer.js';
import { parseManifest } from '../../../src/manifest/schema.js';

const manifest = (over: Record<string, unknown> = {}) =>
  parseManifest({
    schema: '1.0',
    product: 'robot-ai',
    version: '2.1.0',
    channel: 'stable',
    releasedAt: '2026-03-01T12:00:00Z',
    notes: '',
    package: { target: 'robot-ai/robot-ai-2.1.0.tar.gz', length: 10, sha256: 'c'.repeat(64) },
    ...over,
  });
const base = { product: 'robot-ai', channelAllowsPrerelease: false, allowDowngrade: false };

describe('evaluateOffer', () => {
  it.each([
    ['nothing installed', null, {}, { offered: true }],
    ['older installed', '2.0.0', {}, { offered: true }],
    ['same version installed', '2.1.0', {}, { offered: false, reason: 'up-to-date' }],
    ['newer installed', '3.0.0', {}, { offered: false, reason: 'downgrade', code: 'RELEASE_DOWNGRADE' }],
    ['below minFromVersion', '1.2.0', { minFromVersion: '1.4.0' }, { offered: false, reason: 'incompatible', code: 'RELEASE_INCOMPATIBLE' }],
    ['at minFromVersion', '1.4.0', { minFromVersion: '1.4.0' }, { offered: true }],
    ['prerelease on stable', '2.0.0', { version: '2.2.0-rc.1' }, { offered: false, reason: 'prerelease' }],
    ['other product', '1.0.0', { product: 'vacuum' }, { offered: false, reason: 'wrong-product', code: 'RELEASE_WRONG_PRODUCT' }],
  ])('%s', (_name, installed, over, expected) => {
    expect(evaluateOffer({ ...base, manifest: manifest(over), installedVersion: installed })).toMatchObject(expected);
  });

  it('allows a downgrade only when explicitly asked', () => {
    expect(evaluateOffer({ ...base, allowDowngrade: true, manifest: manifest(), installedVersion: '3.0.0' })).toEqual({ offered: true });
  });

  it('allows prereleases on channels that allow them', () => {
    expect(evaluateOffer({ ...base, channelAllowsPrerelease: true, manifest: manifest({ version: '2.2.0-rc.1' }), installedVersion: '2.1.0' })).toEqual({ offered: true });
  });
});

describe('toOffer', () => {
  it('carries times as epoch milliseconds and deferral as milliseconds', () => {
    const m = manifest({ rolloutPercent: 10, maxDeferralHours: 2, installBy: '2026-04-01T00:00:00Z' });
    const offer = toOffer(m, { name: 'robot-ai/robot-ai-2.1.0.manifest.json', length: 300, sha256: 'd'.repeat(64) });
    expect(offer).toMatchObject({
      releasedAt: Date.parse('2026-03-01T12:00:00Z'),
      installBy: Date.parse('2026-04-01T00:00:00Z'),
      maxDeferralMs: 7_200_000,
      rolloutPercent: 10,
      package: { name: 'robot-ai/robot-ai-2.1.0.tar.gz', length: 10, sha256: 'c'.repeat(64) },
    });
    expect(JSON.parse(JSON.stringify(offer))).toEqual(offer);
  });
});
