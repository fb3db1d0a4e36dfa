import { describe, expect, it } from 'vitest';
import { latestOnChannel, proposeVersions, versionProblem, type PublishedRelease } from '../../../src/server/studio/version-rules.js';

const releases: PublishedRelease[] = [
  { product: 'robot-ai', version: '1.2.0', channel: 'stable' },
  { product: 'robot-ai', version: '1.10.0', channel: 'stable' },
  { product: 'robot-ai', version: '2.0.0-rc.1', channel: 'beta' },
  { product: 'nav-stack', version: '5.0.0', channel: 'stable' },
];

describe('studio version rules', () => {
  it('takes the greatest version by semver on the chosen channel of the chosen product, not the newest string', () => {
    expect(latestOnChannel(releases, 'robot-ai', 'stable')).toBe('1.10.0');
    expect(latestOnChannel(releases, 'robot-ai', 'beta')).toBe('2.0.0-rc.1');
    expect(latestOnChannel(releases, 'robot-ai', 'edge')).toBeNull();
  });

  it('proposes the next patch, minor and major after the latest, and nothing on an empty channel', () => {
    expect(proposeVersions('1.10.0')).toEqual({ latest: '1.10.0', patch: '1.10.1', minor: '1.11.0', major: '2.0.0' });
    expect(proposeVersions(null)).toEqual({ latest: null, patch: null, minor: null, major: null });
  });

  it('refuses a non-semver version, a version the product already has on any channel, and one not above the channel latest', () => {
    expect(versionProblem('1.11', releases, 'robot-ai', 'stable')).toContain('not a semantic version');
    expect(versionProblem('v1.11.0', releases, 'robot-ai', 'stable')).toContain('not a semantic version');
    expect(versionProblem('2.0.0-rc.1', releases, 'robot-ai', 'stable')).toContain('already published (channel beta)');
    expect(versionProblem('1.9.9', releases, 'robot-ai', 'stable')).toContain('greater than 1.10.0');
    expect(versionProblem('1.10.0', releases, 'robot-ai', 'stable')).toContain('already published');
  });

  it('accepts a greater version, and any new version on a channel without releases', () => {
    expect(versionProblem('1.10.1', releases, 'robot-ai', 'stable')).toBeNull();
    expect(versionProblem('0.1.0', releases, 'robot-ai', 'edge')).toBeNull();
    expect(versionProblem('5.0.0', releases, 'robot-ai', 'stable')).toBeNull();
  });
});
