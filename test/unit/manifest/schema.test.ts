import { describe, expect, it } from 'vitest';
import { parseManifest, serializeManifest, MAX_NOTES_LENGTH } from '../../../src/manifest/schema.js';

const valid = {
  schema: '1.0',
  product: 'robot-ai',
  version: '2.1.0',
  channel: 'stable',
  releasedAt: '2026-03-01T12:00:00Z',
  notes: 'Faster planner.',
  minFromVersion: '1.4.0',
  requirements: { minFreeBytes: 1_000_000, arch: ['arm64'], os: ['ubuntu-22.04'] },
  package: { target: 'robot-ai/robot-ai-2.1.0.tar.gz', length: 1234, sha256: 'a'.repeat(64) },
  rolloutPercent: 25,
  maxDeferralHours: 72,
  installBy: '2026-04-01T00:00:00Z',
};

function codeOf(fn: () => unknown): { code: string; message: string } {
  try {
    fn();
  } catch (error) {
    return error as { code: string; message: string };
  }
  throw new Error('expected a throw');
}

describe('parseManifest', () => {
  it('accepts a complete manifest as an object, as JSON and as YAML', () => {
    expect(parseManifest(valid).version).toBe('2.1.0');
    expect(parseManifest(JSON.stringify(valid)).rolloutPercent).toBe(25);
    const yaml = `schema: "1.0"\nproduct: robot-ai\nversion: 2.1.0\nchannel: beta\nreleasedAt: 2026-03-01T12:00:00Z\nnotes: |\n  line one\n  line two\npackage:\n  target: robot-ai/robot-ai-2.1.0.tar.gz\n  length: 10\n  sha256: ${'b'.repeat(64)}\n`;
    const m = parseManifest(yaml);
    expect(m.channel).toBe('beta');
    expect(m.notes).toBe('line one\nline two\n');
  });

  it('reads older and newer minor schema versions, dropping unknown fields', () => {
    const m = parseManifest({ ...valid, schema: '1.7', futureField: { x: 1 } });
    expect(m.product).toBe('robot-ai');
    expect('futureField' in m).toBe(false);
  });

  it('refuses an unknown major schema version with MANIFEST_SCHEMA_UNSUPPORTED', () => {
    const e = codeOf(() => parseManifest({ ...valid, schema: '2.0' }));
    expect(e.code).toBe('MANIFEST_SCHEMA_UNSUPPORTED');
    expect(e.message).toContain('"2.0"');
  });

  it('names the field, the value and what was expected', () => {
    const e = codeOf(() => parseManifest({ ...valid, version: '2.1' }));
    expect(e.code).toBe('MANIFEST_INVALID');
    expect(e.message).toMatch(/field version is "2\.1": expected a semantic version/);
    const sha = codeOf(() => parseManifest({ ...valid, package: { ...valid.package, sha256: 'xyz' } }));
    expect(sha.message).toMatch(/field package\.sha256 is "xyz": expected 64 lower-case hex/);
    const missing = codeOf(() => parseManifest({ ...valid, product: undefined }));
    expect(missing.message).toMatch(/field product is missing/);
  });

  it('rejects unsafe target paths, out-of-range rollout, oversized notes and a minFromVersion above the release', () => {
    for (const target of ['/etc/passwd', 'robot-ai/../x.tar.gz', '..', 'a\\b']) {
      expect(codeOf(() => parseManifest({ ...valid, package: { ...valid.package, target } })).code).toBe('MANIFEST_INVALID');
    }
    expect(codeOf(() => parseManifest({ ...valid, rolloutPercent: 101 })).message).toContain('rolloutPercent');
    expect(codeOf(() => parseManifest({ ...valid, notes: 'x'.repeat(MAX_NOTES_LENGTH + 1) })).message).toContain('notes');
    expect(codeOf(() => parseManifest({ ...valid, minFromVersion: '3.0.0' })).message).toContain('minFromVersion');
    expect(codeOf(() => parseManifest({ ...valid, releasedAt: 'yesterday' })).message).toContain('releasedAt');
  });

  it('rejects text that is neither JSON nor YAML, and a non-object', () => {
    expect(codeOf(() => parseManifest('{ "schema": ')).code).toBe('MANIFEST_INVALID');
    expect(codeOf(() => parseManifest('[1,2]')).message).toContain('an array');
  });

  it('serialises with stable key order so the same release hashes the same', () => {
    const a = serializeManifest(parseManifest(valid));
    const shuffled = Object.fromEntries(Object.entries(valid).reverse());
    expect(serializeManifest(parseManifest(shuffled))).toBe(a);
    expect(parseManifest(a)).toEqual(parseManifest(valid));
  });
});
