/**
 * How to treat a download response given the offset we asked for. Servers ignore Range (200 with
 * the whole file), honour it (206 from our offset) or lie about it (206 from elsewhere, a missing or
 * malformed Content-Range). Only a 206 that starts exactly at our offset may be appended; a 200
 * restarts from zero; anything else discards the partial so the next attempt asks for the whole file.
 * Pure, table-tested.
 */
import { OtaError } from '../core/errors.js';
import type { HttpHeaders } from './http-client.js';
import { redactUrl } from './http-errors.js';

export type RangeDecision =
  | { kind: 'append' }
  | { kind: 'restart' }
  | { kind: 'reject'; error: OtaError; discardPartial: boolean };

export interface RangeInput {
  url: string;
  requestedOffset: number;
  status: number;
  headers: HttpHeaders;
  expectedLength: number;
}

export interface ContentRange {
  start: number;
  end: number;
  total: number | null;
}

export function parseContentRange(value: string | undefined): ContentRange | null {
  if (value === undefined) return null;
  const match = /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i.exec(value);
  if (match === null) return null;
  const start = Number(match[1]);
  const end = Number(match[2]);
  const total = match[3] === '*' ? null : Number(match[3]);
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || end < start) return null;
  if (total !== null && (!Number.isSafeInteger(total) || end >= total)) return null;
  return { start, end, total };
}

export function planRangeResponse(input: RangeInput): RangeDecision {
  const url = redactUrl(input.url);
  const details = { url, status: input.status, requestedOffset: input.requestedOffset, expectedLength: input.expectedLength };
  const lengthMismatch = (announced: number): RangeDecision => ({
    kind: 'reject',
    discardPartial: true,
    error: new OtaError(
      'TRUST_LENGTH_MISMATCH',
      `${url} is ${announced} bytes long according to the server; the signed length is ${input.expectedLength}`,
      { details: { ...details, announced } },
    ),
  });

  if (input.status === 200) {
    const announced = parseLength(input.headers['content-length']);
    if (announced !== null && announced !== input.expectedLength) return lengthMismatch(announced);
    return input.requestedOffset === 0 ? { kind: 'append' } : { kind: 'restart' };
  }

  if (input.status === 206) {
    const range = parseContentRange(input.headers['content-range']);
    if (range === null || range.start !== input.requestedOffset) {
      return {
        kind: 'reject',
        discardPartial: true,
        error: new OtaError(
          'HTTP_STATUS',
          `${url} answered 206 with Content-Range "${input.headers['content-range'] ?? '(none)'}" ` +
            `to a request for bytes=${input.requestedOffset}-; restarting the download from zero`,
          { details: { ...details, contentRange: input.headers['content-range'] ?? null }, retryable: true },
        ),
      };
    }
    if (range.total !== null && range.total !== input.expectedLength) return lengthMismatch(range.total);
    return { kind: 'append' };
  }

  return {
    kind: 'reject',
    discardPartial: false,
    error: new OtaError('HTTP_STATUS', `${url} answered HTTP ${input.status}; expected 200 or 206`, {
      details,
      retryable: false,
    }),
  };
}

function parseLength(value: string | undefined): number | null {
  if (value === undefined || !/^\d+$/.test(value.trim())) return null;
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : null;
}
