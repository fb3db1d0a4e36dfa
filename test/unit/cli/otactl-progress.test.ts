import { describe, expect, it } from 'vitest';
import type { ProgressMessage } from '../../../src/daemon/event-bus.js';
import { formatDuration, progressText, ProgressLines } from '../../../src/cli/otactl/progress.js';

const MiB = 2 ** 20;
const msg = (bytes: number, extra: Partial<ProgressMessage> = {}): ProgressMessage => ({
  product: 'robot-ai',
  runId: 'run-1',
  step: 'download',
  bytes,
  total: 100 * MiB,
  rateBps: 4 * MiB,
  etaMs: Math.round(((100 * MiB - bytes) / (4 * MiB)) * 1000),
  ...extra,
});

describe('otactl progress lines for a pipe', () => {
  it('prints the first message of a step and then one per further tenth, however many messages arrive', () => {
    const lines = new ProgressLines();
    const printed: string[] = [];
    for (let b = 0; b <= 100 * MiB; b += MiB / 2) {
      const line = lines.next(msg(b));
      if (line) printed.push(line);
    }
    expect(printed).toHaveLength(11);
    expect(printed[0]).toBe('robot-ai: download 0% 0.0/100.0 MiB at 4.0 MiB/s, 25s left');
    expect(printed[5]).toBe('robot-ai: download 50% 50.0/100.0 MiB at 4.0 MiB/s, 13s left');
    expect(printed[10]).toBe('robot-ai: download 100% 100.0/100.0 MiB at 4.0 MiB/s, 0s left');
  });

  it('starts over for a new step, a new run, or another product', () => {
    const lines = new ProgressLines();
    expect(lines.next(msg(90 * MiB))).not.toBeNull();
    expect(lines.next(msg(91 * MiB))).toBeNull();
    expect(lines.next(msg(91 * MiB, { step: 'extract' }))).not.toBeNull();
    expect(lines.next(msg(92 * MiB, { step: 'extract', runId: 'run-2' }))).not.toBeNull();
    expect(lines.next(msg(92 * MiB, { step: 'extract', runId: 'run-2', product: 'nav' }))).not.toBeNull();
  });

  it('prints a message that changes what the step says it is doing', () => {
    const lines = new ProgressLines();
    expect(lines.next(msg(0, { step: 'extract', rateBps: null, etaMs: null, message: 'unpacking 4 entries' }))).toBe('robot-ai: extract 0% 0.0/100.0 MiB (unpacking 4 entries)');
    expect(lines.next(msg(0, { step: 'extract', rateBps: null, etaMs: null, message: 'unpacked and verified' }))).toBe('robot-ai: extract 0% 0.0/100.0 MiB (unpacked and verified)');
  });

  it('without a total, prints a line per 10 MiB', () => {
    const lines = new ProgressLines();
    const printed = [0, 4, 9, 10, 15, 19, 20, 31].map((m) => lines.next(msg(m * MiB, { total: null, etaMs: null }))).filter(Boolean);
    expect(printed).toEqual(['robot-ai: download 0.0 MiB at 4.0 MiB/s', 'robot-ai: download 10.0 MiB at 4.0 MiB/s', 'robot-ai: download 20.0 MiB at 4.0 MiB/s', 'robot-ai: download 31.0 MiB at 4.0 MiB/s']);
  });
});

describe('otactl progress figures', () => {
  it('writes time left as seconds, minutes and hours, and unknown as -', () => {
    expect([formatDuration(null), formatDuration(400), formatDuration(59_000), formatDuration(185_000), formatDuration(3_720_000)]).toEqual(['-', '0s', '59s', '3m05s', '1h02m']);
  });

  it('gives the percentage, MiB of MiB, rate and time left of a message', () => {
    expect(progressText(msg(30 * MiB))).toBe('download 30% 30.0/100.0 MiB at 4.0 MiB/s, 18s left');
  });

  it('shows no amount for a step that moves no bytes, such as probation', () => {
    const probation = msg(0, { step: 'probation', total: null, rateBps: null, etaMs: 20_000, message: 'round 1 of 3: 1 of 1 checks passed (release-marker)' });
    expect(progressText(probation)).toBe('probation 20s left (round 1 of 3: 1 of 1 checks passed (release-marker))');
    expect(progressText({ ...probation, etaMs: null })).toBe('probation (round 1 of 3: 1 of 1 checks passed (release-marker))');
  });
});
