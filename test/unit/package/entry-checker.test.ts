import { describe, expect, it } from 'vitest';
import { OtaError } from '../../../src/core/errors.js';
import { createEntryChecker, normalizeEntryPath, type HeaderLike } from '../../../src/package/entry-checker.js';
import { DEFAULT_PACKAGE_LIMITS, maxInflatedBytes, resolveLimits } from '../../../src/package/limits.js';

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
    const limits = { maxEntries: 3, maxTotalBytes: 100, maxEntryBytes: 60 };
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
    expect(maxInflatedBytes({ maxEntries: 10, maxTotalBytes: 1000, maxEntryBytes: 1000 })).toBe(1000 + 12 * 2048 + 1024 * 1024);
  });
});
