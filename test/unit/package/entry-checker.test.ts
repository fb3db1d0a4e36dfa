import { describe, expect, it } from 'vitest';
import { OtaError } from '../../../src/core/errors.js';
import { createEntryChecker, normalizeEntryPath, type HeaderLike } from '../../../src/package/entry-checker.js';
import { COMPRESSION_RATIO_FLOOR_BYTES, DEFAULT_PACKAGE_LIMITS, maxInflatedBytes, ratioCapBytes, resolveLimits } from '../../../src/package/limits.js';

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(OtaError);
    return (error as OtaError).code;
  }
  return 'accepted';
}

function run(headers: HeaderLike[], limits = DEFAULT_PACKAGE_LIMITS): string {
  const checker = createEntryChecker(limits);
  return codeOf(() => {
    for (const h of headers) checker.check(h);
    checker.finish();
  });
}

const file = (name: string, size = 1, mode = 0o644): HeaderLike => ({ name, size, mode, type: 'file' });
const dir = (name: string, mode = 0o755): HeaderLike => ({ name, mode, type: 'directory' });
const link = (name: string, linkname: string): HeaderLike => ({ name, mode: 0o777, type: 'symlink', linkname });

describe('normalizeEntryPath', () => {
  it.each([
    ['./a/b', 'a/b'],
    ['a//b/', 'a/b'],
    ['./', ''],
    ['a/./b', 'a/b'],
    ['..foo/bar..', '..foo/bar..'],
  ])('normalises %s to %s', (name, expected) => {
    expect(normalizeEntryPath(name)).toBe(expected);
  });

  it.each(['/etc/passwd', '../x', 'a/../../x', 'a/..', '', 'a\0b'])('rejects %j as PACKAGE_UNSAFE_PATH', (name) => {
    expect(codeOf(() => normalizeEntryPath(name))).toBe('PACKAGE_UNSAFE_PATH');
  });
});

describe('createEntryChecker', () => {
  it('accepts an ordinary release with a root entry, implied parents and an inside symlink', () => {
    expect(run([dir('./'), file('bin/app'), dir('bin/'), dir('lib'), file('lib/m'), link('lib/cur', 'm'), link('top', 'lib/cur')])).toBe('accepted');
  });

  it('accepts a symlink into a sibling directory through ..', () => {
    expect(run([file('a/x'), link('b/y', '../a/x')])).toBe('accepted');
  });

  it('rejects a file written under a path that is a file', () => {
    expect(run([file('a'), file('a/b')])).toBe('PACKAGE_DUPLICATE_ENTRY');
  });

  it('rejects an explicit directory listed twice', () => {
    expect(run([dir('a'), dir('a/')])).toBe('PACKAGE_DUPLICATE_ENTRY');
  });

  it('rejects a symlink climbing out from a nested directory', () => {
    expect(run([link('a/b/l', '../../../x')])).toBe('PACKAGE_UNSAFE_LINK');
  });

  it('rejects a symlink whose escape only shows through a symlink declared later', () => {
    expect(run([link('l', 's/..'), link('s', '.')])).toBe('PACKAGE_UNSAFE_LINK');
  });

  it('rejects a symlink loop', () => {
    expect(run([link('a', 'b'), link('b', 'a')])).toBe('PACKAGE_UNSAFE_LINK');
  });

  it('rejects a symlink as the package root', () => {
    expect(run([link('./', 'x')])).toBe('PACKAGE_UNSAFE_PATH');
  });

  it.each(['contiguous-file', 'fifo', 'character-device', 'block-device', null])('rejects type %s as PACKAGE_UNSAFE_TYPE', (type) => {
    expect(run([{ name: 'x', type, mode: 0o644 }])).toBe('PACKAGE_UNSAFE_TYPE');
  });

  it.each([0o4755, 0o2755, 0o1755])('rejects mode %o as PACKAGE_UNSAFE_MODE', (mode) => {
    expect(run([file('x', 1, mode)])).toBe('PACKAGE_UNSAFE_MODE');
  });

  it('stops at the entry cap, the per-entry cap and the total cap', () => {
    const limits = { maxEntries: 3, maxTotalBytes: 100, maxEntryBytes: 60, maxCompressionRatio: 100 };
    expect(run([file('a'), file('b'), file('c')], limits)).toBe('accepted');
    expect(run([file('a'), file('b'), file('c'), file('d')], limits)).toBe('PACKAGE_TOO_LARGE');
    expect(run([file('a', 61)], limits)).toBe('PACKAGE_TOO_LARGE');
    expect(run([file('a', 60), file('b', 41)], limits)).toBe('PACKAGE_TOO_LARGE');
  });

  it('counts entries and file bytes', () => {
    const checker = createEntryChecker(DEFAULT_PACKAGE_LIMITS);
    checker.check(dir('d'));
    checker.check(file('d/a', 10));
    checker.check(link('d/l', 'a'));
    expect([checker.entries, checker.totalBytes]).toEqual([3, 10]);
  });
});

describe('limits', () => {
  it('fills missing limits from the defaults and refuses nonsense', () => {
    expect(resolveLimits({ maxEntries: 5 })).toEqual({ ...DEFAULT_PACKAGE_LIMITS, maxEntries: 5 });
    expect(() => resolveLimits({ maxEntries: -1 })).toThrow(RangeError);
  });

  it('allows the inflated stream only the framing its entries can need', () => {
    expect(maxInflatedBytes({ maxEntries: 10, maxTotalBytes: 1000, maxEntryBytes: 1000, maxCompressionRatio: 100 })).toBe(1000 + 12 * 2048 + 1024 * 1024);
  });
});

describe('names the scanner judges, not the kernel (threats.md, Packages)', () => {
  it('accepts a component of exactly 255 bytes and a path of exactly 4,095 bytes', () => {
    expect(run([file('a'.repeat(255))])).toBe('accepted');
    const path = Array.from({ length: 16 }, () => 'b'.repeat(254)).join('/');
    expect(Buffer.byteLength(path)).toBe(16 * 255 - 1);
    expect(run([file(path)])).toBe('accepted');
  });

  it('rejects a 300-byte component and a 4,200-byte path as PACKAGE_UNSAFE_PATH', () => {
    expect(run([file('a'.repeat(300))])).toBe('PACKAGE_UNSAFE_PATH');
    // Multi-byte characters count in bytes: 128 × "é" is 256 bytes.
    expect(run([file('é'.repeat(128))])).toBe('PACKAGE_UNSAFE_PATH');
    const path = Array.from({ length: 20 }, () => 'c'.repeat(209)).join('/');
    expect(Buffer.byteLength(path)).toBe(4199);
    expect(run([file(path)])).toBe('PACKAGE_UNSAFE_PATH');
  });

  it.each(['bin/a\nb', 'tab\there', 'esc\u001b[31m', 'del\u007f', 'c1\u0085'])('rejects the control character in %j', (name) => {
    expect(run([file(name)])).toBe('PACKAGE_UNSAFE_PATH');
  });

  it('rejects a name the tar parser had to rewrite (U+FFFD) and a symlink target that is not UTF-8', () => {
    expect(run([file('bad-\ufffd-name')])).toBe('PACKAGE_UNSAFE_PATH');
    expect(run([file('x'), link('l', 'x\ufffd')])).toBe('PACKAGE_UNSAFE_LINK');
    expect(run([file('x'), link('l', 'x\ny')])).toBe('PACKAGE_UNSAFE_LINK');
  });

  it.each(['.ota-release.json', './.ota-release.json', '..ota-release.json.0a1b2c.tmp', '.ota-anything/x'])('rejects the reserved name %j at the release root', (name) => {
    expect(run([file(name)])).toBe('PACKAGE_UNSAFE_PATH');
  });

  it('accepts the same names below the root, and non-ASCII UTF-8 names', () => {
    expect(run([file('docs/.ota-release.json'), file('données/été.txt'), file('日本/名前')])).toBe('accepted');
  });

  it('lets otad restore its own backups: their modes and its release marker pass with origin "backup"', () => {
    const backup = { ...DEFAULT_PACKAGE_LIMITS, origin: 'backup' as const };
    expect(run([file('.ota-release.json'), dir('data', 0o775), file('data/log', 1, 0o664), file('odd\tname')], backup)).toBe('accepted');
    expect(run([file('a'.repeat(300))], backup)).toBe('PACKAGE_UNSAFE_PATH');
  });
});

describe('no world-writable installs: group or other write bits are rejected (documented policy)', () => {
  it.each([
    ['file', 0o666],
    ['file', 0o777],
    ['file', 0o664],
    ['file', 0o646],
    ['directory', 0o777],
    ['directory', 0o775],
  ] as const)('rejects a %s with mode %o as PACKAGE_UNSAFE_MODE', (type, mode) => {
    expect(run([type === 'file' ? file('x', 1, mode) : dir('x', mode)])).toBe('PACKAGE_UNSAFE_MODE');
  });

  it('accepts 0755 and 0644 and a symlink (whose mode means nothing on Linux)', () => {
    expect(run([dir('d', 0o755), file('d/a', 1, 0o644), file('d/b', 1, 0o700), link('d/l', 'a')])).toBe('accepted');
  });
});

describe('the compression-ratio cap', () => {
  it('allows ratio × compressed bytes, at least the floor, and nothing when it is 0', () => {
    expect(ratioCapBytes(DEFAULT_PACKAGE_LIMITS, 1024 * 1024)).toBe(100 * 1024 * 1024);
    expect(ratioCapBytes(DEFAULT_PACKAGE_LIMITS, 1000)).toBe(COMPRESSION_RATIO_FLOOR_BYTES);
    expect(ratioCapBytes({ ...DEFAULT_PACKAGE_LIMITS, maxCompressionRatio: 0 }, 1000)).toBe(Number.POSITIVE_INFINITY);
    expect(() => resolveLimits({ maxCompressionRatio: -1 })).toThrow(RangeError);
  });
});
