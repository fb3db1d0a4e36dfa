import { describe, expect, it } from 'vitest';
import { ChunkedDecoder } from '../../../src/net/lean-get.js';

/** Decodes `wire` fed in pieces cut at `cuts`; segments are copied at once (they are views). */
function decode(wire: string, cuts: number[] = []): { body: string; done: boolean; error: string | null } {
  const bytes = Buffer.from(wire, 'latin1');
  const decoder = new ChunkedDecoder();
  const out: Buffer[] = [];
  let start = 0;
  for (const cut of [...cuts, bytes.length]) {
    const error = decoder.push(bytes.subarray(start, cut), (segment) => out.push(Buffer.from(segment)));
    if (error !== null) return { body: Buffer.concat(out).toString('latin1'), done: decoder.done, error };
    start = cut;
  }
  return { body: Buffer.concat(out).toString('latin1'), done: decoder.done, error: null };
}

const WIRE = '5\r\nhello\r\n7;name=value\r\n, world\r\n0\r\nX-Trailer: yes\r\n\r\n';

describe('ChunkedDecoder', () => {
  it('decodes chunks with extensions and drops the trailer', () => {
    expect(decode(WIRE)).toEqual({ body: 'hello, world', done: true, error: null });
  });

  it('gives the same body whatever byte the reads are split at', () => {
    for (let cut = 1; cut < WIRE.length; cut++) {
      expect(decode(WIRE, [cut]), `split at ${cut}`).toEqual({ body: 'hello, world', done: true, error: null });
    }
    const everyByte = Array.from({ length: WIRE.length - 1 }, (_, i) => i + 1);
    expect(decode(WIRE, everyByte)).toEqual({ body: 'hello, world', done: true, error: null });
  });

  it('accepts upper-case hex sizes and a bare LF line end', () => {
    expect(decode('A\r\n0123456789\r\n0\n\n')).toEqual({ body: '0123456789', done: true, error: null });
  });

  it('is not done until the empty line after the last chunk', () => {
    expect(decode('3\r\nabc\r\n0\r\n')).toEqual({ body: 'abc', done: false, error: null });
  });

  it('ignores bytes after the end of the body', () => {
    expect(decode('2\r\nok\r\n0\r\n\r\nGARBAGE')).toEqual({ body: 'ok', done: true, error: null });
  });

  it('refuses a size line that is not hex', () => {
    expect(decode('zz\r\nabc\r\n').error).toMatch(/chunk size line of "zz"/);
  });

  it('refuses a chunk whose data is not followed by CRLF', () => {
    const result = decode('3\r\nabcd\r\n0\r\n\r\n');
    expect(result.body).toBe('abc');
    expect(result.error).toBe('a chunk was not followed by CRLF');
  });

  it('refuses a size line longer than 4096 bytes, even split over reads', () => {
    const wire = `1;${'x'.repeat(5000)}\r\na\r\n0\r\n\r\n`;
    expect(decode(wire, [1000, 2000, 3000, 4000]).error).toMatch(/chunk line over 4096 bytes/);
  });

  it('refuses a size too large to be a number of bytes', () => {
    expect(decode('12345678901234\r\n').error).toMatch(/chunk size line/);
  });
});
