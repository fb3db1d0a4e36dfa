/** The fleet page's pure formatting (src/server/ui/public/format.js, a browser module without types). */
import { describe, expect, it } from 'vitest';

interface Format {
  relativeTime(at: number, now: number): string;
  percent(part: number, whole: number): string;
  duration(ms: number): string;
  selectorLabel(selector: unknown): string;
}
const FORMAT: string = '../../../src/server/ui/public/format.js';
const f = (await import(FORMAT)) as Format;
const NOW = 1_800_000_000_000;

describe('fleet page formatting', () => {
  it('says how long ago in the largest whole unit, and a time ahead as "in"', () => {
    expect(f.relativeTime(NOW - 2000, NOW)).toBe('just now');
    expect(f.relativeTime(NOW - 42_000, NOW)).toBe('42 s ago');
    expect(f.relativeTime(NOW - 5 * 60_000 - 59_000, NOW)).toBe('5 min ago');
    expect(f.relativeTime(NOW - 3 * 3_600_000, NOW)).toBe('3 h ago');
    expect(f.relativeTime(NOW - 2 * 86_400_000, NOW)).toBe('2 d ago');
    expect(f.relativeTime(NOW + 90_000, NOW)).toBe('in 1 min');
  });

  it('gives shares to one decimal with a no-break space, and 0 % of nothing', () => {
    expect(f.percent(3, 40)).toBe('7.5\u00a0%');
    expect(f.percent(1, 3)).toBe('33.3\u00a0%');
    expect(f.percent(0, 0)).toBe('0\u00a0%');
    expect(f.percent(0.05, 1)).toBe('5\u00a0%');
  });

  it('names durations and batch selectors in words', () => {
    expect(f.duration(45_000)).toBe('45 s');
    expect(f.duration(30 * 60_000)).toBe('30 min');
    expect(f.duration(90 * 60_000)).toBe('1 h 30 min');
    expect(f.duration(2 * 3_600_000)).toBe('2 h');
    expect(f.selectorLabel({ percent: 5 })).toBe('5\u00a0% of the fleet');
    expect(f.selectorLabel({ tags: { site: 'lab', model: 'r2' } })).toBe('site=lab, model=r2');
    expect(f.selectorLabel({ all: true })).toBe('all remaining devices');
    expect(f.selectorLabel({ other: 1 })).toBe('{"other":1}');
  });
});
