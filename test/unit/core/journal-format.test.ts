import { describe, expect, it } from 'vitest';
import { formatJournalLine } from '../../../src/core/journal-format.js';

describe('journal lines', () => {
  it('prefix each level with its syslog priority', () => {
    expect(['error', 'warn', 'info', 'debug'].map((l) => formatJournalLine(l, 'm', {}))).toEqual(['<3>m', '<4>m', '<6>m', '<7>m']);
  });

  it('put product and runId first, then the other fields as key=value', () => {
    expect(formatJournalLine('info', 'step done', { step: 'stage', runId: 'r-1', bytes: 12, product: 'robot-ai' })).toBe(
      '<6>step done product=robot-ai runId=r-1 step=stage bytes=12',
    );
  });

  it('quote strings a reader could split wrongly and write objects as JSON', () => {
    expect(formatJournalLine('warn', 'x', { reason: 'no saved state', path: '/a=b', ok: true, error: { code: 'E', retryable: false }, list: ['a'] })).toBe(
      '<4>x reason="no saved state" path="/a=b" ok=true error={"code":"E","retryable":false} list=["a"]',
    );
  });

  it('escape a newline in the message so one line stays one journal entry', () => {
    expect(formatJournalLine('error', 'first\nsecond', { note: 'a\nb' })).toBe('<3>first\\nsecond note="a\\nb"');
  });
});
