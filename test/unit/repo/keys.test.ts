import { describe, expect, it } from 'vitest';
import { Metadata, Timestamp, MetaFile, MetadataKind } from '@tufjs/models';
import { generateSigningKey, keyIdFor, signerFor, tufKey } from '../../../src/repo/keys.js';
import { parseDurationArg as parseDuration } from '../../../src/core/duration.js';

describe('signing keys', () => {
  it('key ids are the SHA-256 of the canonical public key and signatures verify with @tufjs/models', () => {
    const key = generateSigningKey('timestamp');
    expect(key.keyid).toBe(keyIdFor(key.publicHex));
    expect(key.publicHex).toMatch(/^[0-9a-f]{64}$/);
    const md = new Metadata(new Timestamp({ version: 1, specVersion: '1.0.31', expires: '2030-01-01T00:00:00Z', snapshotMeta: new MetaFile({ version: 1 }) }));
    md.sign(signerFor(key));
    expect(() => tufKey(key).verifySignature(md)).not.toThrow();
    expect(MetadataKind.Timestamp).toBe('timestamp');
  });
});

describe('parseDurationArg', () => {
  it('reads days, hours, minutes, seconds and milliseconds, and names a bad value', () => {
    expect(parseDuration('365d', 'x')).toBe(365 * 86_400_000);
    expect(parseDuration('12h', 'x')).toBe(43_200_000);
    expect(parseDuration('1500', 'x')).toBe(1500);
    expect(() => parseDuration('soon', '--expiry')).toThrow(/--expiry is "soon"/);
  });
});
