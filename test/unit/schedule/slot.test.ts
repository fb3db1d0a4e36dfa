import { describe, expect, it } from 'vitest';
import { OtaError } from '../../../src/core/errors.js';
import { nextCronSlot, nextLocalSlot, parseLocalTime } from '../../../src/schedule/slot.js';

const utc = (iso: string): number => Date.parse(iso);
const slot = (after: string, time: string, timeZone: string): string =>
  new Date(nextLocalSlot({ after: utc(after), time, timeZone })).toISOString();

/*
 * Transition instants, read from Intl for 2026/2027 (see the oracle test below, which checks every day):
 *   Europe/Berlin     spring 2026-03-29T01:00Z, 2027-03-28T01:00Z (02:00→03:00); autumn 2026-10-25T01:00Z, 2027-10-31T01:00Z (03:00→02:00)
 *   America/New_York  spring 2026-03-08T07:00Z (02:00→03:00); autumn 2026-11-01T06:00Z (02:00→01:00)
 *   Australia/Sydney  autumn 2026-04-04T16:00Z (03:00→02:00); spring 2026-10-03T16:00Z (02:00→03:00)
 *   Pacific/Chatham   autumn 2026-04-04T14:00Z, 2027-04-03T14:00Z (03:45→02:45); spring 2026-09-26T14:00Z, 2027-09-25T14:00Z (02:45→03:45)
 */
describe('nextLocalSlot: daylight-saving rule with exact UTC instants', () => {
  it('Europe/Berlin 02:30 on the spring day is the moment clocks jump (03:00 CEST = 01:00 UTC)', () => {
    expect(slot('2026-03-28T12:00:00Z', '02:30', 'Europe/Berlin')).toBe('2026-03-29T01:00:00.000Z');
    expect(slot('2026-03-29T01:00:00Z', '02:30', 'Europe/Berlin')).toBe('2026-03-30T00:30:00.000Z');
    expect(slot('2027-03-27T12:00:00Z', '02:30', 'Europe/Berlin')).toBe('2027-03-28T01:00:00.000Z');
  });

  it('Europe/Berlin 02:30 on the autumn day is the first occurrence only (CEST), never the repeated one', () => {
    expect(slot('2026-10-24T12:00:00Z', '02:30', 'Europe/Berlin')).toBe('2026-10-25T00:30:00.000Z');
    // Between the two occurrences, and just before the second: the next slot is the next day.
    expect(slot('2026-10-25T00:30:00Z', '02:30', 'Europe/Berlin')).toBe('2026-10-26T01:30:00.000Z');
    expect(slot('2026-10-25T01:29:59.999Z', '02:30', 'Europe/Berlin')).toBe('2026-10-26T01:30:00.000Z');
    expect(slot('2027-10-30T12:00:00Z', '02:30', 'Europe/Berlin')).toBe('2027-10-31T00:30:00.000Z');
  });

  it('America/New_York 02:30 on the spring day is 03:00 EDT; 01:30 on the autumn day is its EDT occurrence only', () => {
    expect(slot('2026-03-07T12:00:00Z', '02:30', 'America/New_York')).toBe('2026-03-08T07:00:00.000Z');
    expect(slot('2026-03-08T07:00:00Z', '02:30', 'America/New_York')).toBe('2026-03-09T06:30:00.000Z');
    // In New York the repeated hour is 01:00-02:00; 02:30 happens once (EST).
    expect(slot('2026-10-31T12:00:00Z', '02:30', 'America/New_York')).toBe('2026-11-01T07:30:00.000Z');
    expect(slot('2026-10-31T12:00:00Z', '01:30', 'America/New_York')).toBe('2026-11-01T05:30:00.000Z');
    expect(slot('2026-11-01T05:30:00Z', '01:30', 'America/New_York')).toBe('2026-11-02T06:30:00.000Z');
  });

  it('Australia/Sydney 02:30: first occurrence on the April day, the jump instant on the October day', () => {
    expect(slot('2026-04-04T00:00:00Z', '02:30', 'Australia/Sydney')).toBe('2026-04-04T15:30:00.000Z');
    expect(slot('2026-04-04T15:30:00Z', '02:30', 'Australia/Sydney')).toBe('2026-04-05T16:30:00.000Z');
    expect(slot('2026-10-03T00:00:00Z', '02:30', 'Australia/Sydney')).toBe('2026-10-03T16:00:00.000Z');
    expect(slot('2026-10-03T16:00:00Z', '02:30', 'Australia/Sydney')).toBe('2026-10-04T15:30:00.000Z');
  });

  it('Pacific/Chatham 03:00 itself: skipped in spring (→ 03:45 +13:45), repeated in autumn (first, +13:45)', () => {
    expect(slot('2026-09-26T00:00:00Z', '03:00', 'Pacific/Chatham')).toBe('2026-09-26T14:00:00.000Z');
    expect(slot('2026-09-26T14:00:00Z', '03:00', 'Pacific/Chatham')).toBe('2026-09-27T13:15:00.000Z');
    expect(slot('2027-09-25T00:00:00Z', '03:00', 'Pacific/Chatham')).toBe('2027-09-25T14:00:00.000Z');
    expect(slot('2026-04-04T00:00:00Z', '03:00', 'Pacific/Chatham')).toBe('2026-04-04T13:15:00.000Z');
    expect(slot('2026-04-04T13:15:00Z', '03:00', 'Pacific/Chatham')).toBe('2026-04-05T14:15:00.000Z');
    expect(slot('2026-04-04T13:30:00Z', '03:00', 'Pacific/Chatham')).toBe('2026-04-05T14:15:00.000Z');
    expect(slot('2027-04-03T00:00:00Z', '03:00', 'Pacific/Chatham')).toBe('2027-04-03T13:15:00.000Z');
  });

  it('is strictly after `after`, to the millisecond', () => {
    expect(slot('2026-06-01T00:59:59.999Z', '03:00', 'Europe/Berlin')).toBe('2026-06-01T01:00:00.000Z');
    expect(slot('2026-06-01T01:00:00.000Z', '03:00', 'Europe/Berlin')).toBe('2026-06-02T01:00:00.000Z');
    expect(slot('2026-06-01T01:00:00.001Z', '03:00', 'Europe/Berlin')).toBe('2026-06-02T01:00:00.000Z');
  });
});

/** An independent reading of the rule, from Intl alone. */
function makeOracle(timeZone: string) {
  const fmt = new Intl.DateTimeFormat('en-US', {
    timeZone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
  const local = (t: number) => {
    const p = Object.fromEntries(fmt.formatToParts(new Date(t)).map((x) => [x.type, x.value]));
    return { date: `${p.year}-${p.month}-${p.day}`, minutes: Number(p.hour) * 60 + Number(p.minute), second: Number(p.second) };
  };
  const offsetAt = (t: number) => {
    const l = local(t);
    const [y, m, d] = l.date.split('-').map(Number) as [number, number, number];
    return Date.UTC(y, m - 1, d, 0, l.minutes, l.second) - Math.floor(t / 1000) * 1000;
  };
  /** The rule for one local date: first instant showing HH:MM; if none (gap), the first instant after it. */
  const expected = (date: string, hh: number, mm: number): number => {
    const [y, m, d] = date.split('-').map(Number) as [number, number, number];
    const naive = Date.UTC(y, m - 1, d, hh, mm);
    const offsets = new Set([offsetAt(naive - 86_400_000), offsetAt(naive), offsetAt(naive + 86_400_000)]);
    const hits = [...offsets].map((o) => naive - o).filter((t) => { const l = local(t); return l.date === date && l.minutes === hh * 60 + mm; });
    if (hits.length > 0) return Math.min(...hits);
    for (let t = naive - 16 * 3_600_000; ; t += 60_000) {
      const l = local(t);
      if (l.date === date && l.minutes > hh * 60 + mm) return t;
    }
  };
  return { local, expected };
}

describe('nextLocalSlot agrees with an Intl oracle on every day of 2026 and 2027', () => {
  const cases: Array<[string, string]> = [
    ['Europe/Berlin', '02:30'], ['America/New_York', '02:30'], ['America/New_York', '01:30'],
    ['Australia/Sydney', '02:30'], ['Pacific/Chatham', '03:00'], ['Australia/Lord_Howe', '02:15'],
  ];
  it.each(cases)('%s at %s: one slot per local date, following the rule', (timeZone, time) => {
    const oracle = makeOracle(timeZone);
    const [hh, mm] = time.split(':').map(Number) as [number, number];
    let t = nextLocalSlot({ after: Date.parse('2025-12-31T12:00:00Z'), time, timeZone });
    let prevDate = oracle.local(t).date;
    expect(prevDate).toBe('2026-01-01');
    let anomalies = 0;
    while (t < Date.parse('2027-12-31T00:00:00Z')) {
      const date = oracle.local(t).date;
      expect(t, `${timeZone} ${date}`).toBe(oracle.expected(date, hh, mm));
      if (oracle.local(t).minutes !== hh * 60 + mm) anomalies++;
      const next = nextLocalSlot({ after: t, time, timeZone });
      const nextDate = oracle.local(next).date;
      const dayAfter = new Date(Date.parse(`${date}T12:00:00Z`) + 86_400_000).toISOString().slice(0, 10);
      expect(nextDate, `the slot after ${date} in ${timeZone}`).toBe(dayAfter);
      prevDate = date;
      t = next;
    }
    // Two spring gaps (2026, 2027) where HH:MM does not exist, except where HH:MM is outside the gap.
    expect(anomalies).toBe(timeZone === 'America/New_York' && time === '01:30' ? 0 : 2);
  });
});

describe('nextCronSlot', () => {
  const at = (expr: string, after: string, tz: string) => {
    const v = nextCronSlot(expr, utc(after), tz);
    return v === null ? null : new Date(v).toISOString();
  };
  it('a fixed daily expression follows the same daylight-saving rule as nextLocalSlot', () => {
    expect(at('30 2 * * *', '2026-03-28T12:00:00Z', 'Europe/Berlin')).toBe('2026-03-29T01:00:00.000Z');
    expect(at('30 2 * * *', '2026-10-24T12:00:00Z', 'Europe/Berlin')).toBe('2026-10-25T00:30:00.000Z');
    expect(at('30 2 * * *', '2026-10-25T00:30:00Z', 'Europe/Berlin')).toBe('2026-10-26T01:30:00.000Z');
    expect(at('0 3 * * *', '2026-09-26T00:00:00Z', 'Pacific/Chatham')).toBe('2026-09-26T14:00:00.000Z');
    expect(at('0 3 * * *', '2026-04-04T13:15:00Z', 'Pacific/Chatham')).toBe('2026-04-05T14:15:00.000Z');
  });

  it('a list of times also serves a repeated time once', () => {
    const runs: string[] = [];
    let t = utc('2026-10-24T12:00:00Z');
    for (let i = 0; i < 4; i++) {
      t = nextCronSlot('30 2,14 * * *', t, 'Europe/Berlin') ?? Number.NaN;
      runs.push(new Date(t).toISOString());
    }
    expect(runs).toEqual(['2026-10-24T12:30:00.000Z', '2026-10-25T00:30:00.000Z', '2026-10-25T13:30:00.000Z', '2026-10-26T01:30:00.000Z']);
  });

  it('honours day-of-week fields in the zone', () => {
    // 2026-03-28 is a Saturday: the next weekday 02:30 in Berlin is Monday 2026-03-30.
    expect(at('30 2 * * 1-5', '2026-03-28T12:00:00Z', 'Europe/Berlin')).toBe('2026-03-30T00:30:00.000Z');
  });

  it('rejects an invalid expression or time zone with CONFIG_INVALID', () => {
    expect(() => nextCronSlot('not a cron', 0, 'Europe/Berlin')).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    expect(() => nextCronSlot('', 0, 'Europe/Berlin')).toThrow(OtaError);
    expect(() => nextCronSlot('0 3 * * *', 0, 'Mars/Olympus')).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });
});

describe('parseLocalTime and input checks', () => {
  it('accepts 24-hour HH:MM', () => {
    expect(parseLocalTime('00:00')).toEqual({ hour: 0, minute: 0 });
    expect(parseLocalTime('23:59')).toEqual({ hour: 23, minute: 59 });
  });
  it.each(['3:00', '24:00', '03:60', '03:00:00', 'three', ''])('rejects %j with CONFIG_INVALID', (bad) => {
    expect(() => parseLocalTime(bad)).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });
  it('rejects an unknown time zone with CONFIG_INVALID', () => {
    expect(() => nextLocalSlot({ after: 0, time: '03:00', timeZone: 'Europe/Atlantis' })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });
});

describe('time zone is never implicit', () => {
  it('rejects an empty zone instead of falling back to the host zone', () => {
    expect(() => nextLocalSlot({ after: 0, time: '03:00', timeZone: '' })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    expect(() => nextCronSlot('0 3 * * *', 0, '')).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });
});
