import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { MemoryLogger, silentLogger } from '../../../src/core/logger.js';
import { createHttpClient } from '../../../src/net/http-client.js';
import type { HttpClient, HttpClientOptions } from '../../../src/net/http-client.js';
import { isTooLarge } from '../../../src/net/http-errors.js';
import { withRetry } from '../../../src/net/retry.js';
import { createFaultyServer } from '../../support/faulty-server.js';
import type { FaultyServer } from '../../support/faulty-server.js';
import { rejection } from '../../support/assertions.js';
import { selfSignedCertificate } from '../../support/self-signed.js';

const TEN_MB = 10 * 1024 * 1024;
const fastRetry = { retries: 3, minDelayMs: 5, maxDelayMs: 20, factor: 2, jitter: true };

let server: FaultyServer;
let http: HttpClient;

function makeHttp(overrides: Partial<HttpClientOptions> = {}): HttpClient {
  return createHttpClient({
    connectTimeoutMs: 1_000,
    headersTimeoutMs: 1_000,
    idleTimeoutMs: 1_000,
    userAgent: 'otad-test/1',
    logger: silentLogger,
    ...overrides,
  });
}

/** Waits for something the server or a fake will do; the test timeout bounds it. */
async function until(predicate: () => boolean): Promise<void> {
  while (!predicate()) await new Promise((resolve) => setTimeout(resolve, 2));
}

beforeEach(async () => {
  server = await createFaultyServer({
    '/timestamp.json': Buffer.from('{"signed":{}}'),
    '/huge.json': Buffer.alloc(TEN_MB, 0x20),
  });
  http = makeHttp();
});

afterEach(async () => {
  await http.close();
  await server.close();
});

describe('http client getBuffer', () => {
  it('returns status, lower-case headers and the body', async () => {
    const response = await http.getBuffer(server.url('/timestamp.json'), { maxBytes: 1024, deadlineMs: 2_000 });
    expect(response.status).toBe(200);
    expect(response.headers['content-type']).toBe('application/octet-stream');
    expect(response.body.toString()).toBe('{"signed":{}}');
  });

  it('cuts a 10 MB body off at maxBytes when the length is not announced', async () => {
    server.setFaults({ chunked: true });
    const error = await rejection(http.getBuffer(server.url('/huge.json'), { maxBytes: 64 * 1024, deadlineMs: 5_000 }));
    expect(isTooLarge(error)).toBe(true);
    expect(error.code).toBe('TRUST_LENGTH_MISMATCH');
    // Reading stopped right after the cap: at most one more chunk than allowed was held.
    expect(error.details?.receivedBytes).toBeLessThanOrEqual(64 * 1024 + 64 * 1024);
    await server.settled();
    expect(server.requests[0]?.cut).toBe(true);
    expect(server.bytesSent()).toBeLessThan(TEN_MB);
  });

  it('refuses a 10 MB body announced by Content-Length without reading it', async () => {
    const error = await rejection(http.getBuffer(server.url('/huge.json'), { maxBytes: 64 * 1024, deadlineMs: 5_000 }));
    expect(isTooLarge(error)).toBe(true);
    expect(error.details).toMatchObject({ receivedBytes: 0, announcedBytes: TEN_MB, maxBytes: 64 * 1024 });
  });

  it('maps a 404 to HTTP_NOT_FOUND (not retryable) and the retry wrapper does not retry it', async () => {
    const error = await rejection(
      withRetry(() => http.getBuffer(server.url('/missing.json'), { maxBytes: 1024, deadlineMs: 2_000 }), {
        operation: 'fetch missing.json',
        logger: silentLogger,
        policy: fastRetry,
      }),
    );
    expect(error.code).toBe('HTTP_NOT_FOUND');
    expect(error.retryable).toBe(false);
    expect(server.requests).toHaveLength(1);
  });

  it('retries 500 then 503 and succeeds, logging each failed attempt', async () => {
    server.setFaults({ statusesFirst: [500, 503] });
    const logger = new MemoryLogger();
    const response = await withRetry(() => http.getBuffer(server.url('/timestamp.json'), { maxBytes: 1024, deadlineMs: 2_000 }), {
      operation: 'fetch timestamp.json',
      logger,
      policy: fastRetry,
    });
    expect(response.status).toBe(200);
    expect(logger.lines.filter((l) => l.level === 'warn').map((l) => l.fields.code)).toEqual(['HTTP_STATUS', 'HTTP_STATUS']);
  });

  it('treats 429 as retryable and other 4xx as final', async () => {
    server.setFaults({ statusesFirst: [429, 403] });
    const error = await rejection(
      withRetry(() => http.getBuffer(server.url('/timestamp.json'), { maxBytes: 1024, deadlineMs: 2_000 }), {
        operation: 'fetch',
        logger: silentLogger,
        policy: fastRetry,
      }),
    );
    expect(error).toMatchObject({ code: 'HTTP_STATUS', retryable: false, details: { status: 403 } });
    expect(server.requests).toHaveLength(2);
  });

  it('times out a server that never sends headers with NETWORK_TIMEOUT', async () => {
    await http.close();
    http = makeHttp({ headersTimeoutMs: 100 });
    server.setFaults({ hangFirst: 1 });
    const error = await rejection(http.getBuffer(server.url('/timestamp.json'), { maxBytes: 1024, deadlineMs: 5_000 }));
    expect(error.code).toBe('NETWORK_TIMEOUT');
    expect(error.retryable).toBe(true);
  });

  it('enforces the whole-request deadline on a drip-fed body', async () => {
    server.setFaults({ dripMs: 10 });
    const error = await rejection(http.getBuffer(server.url('/huge.json'), { maxBytes: TEN_MB, deadlineMs: 100 }));
    expect(error.code).toBe('NETWORK_TIMEOUT');
    expect(error.details?.deadlineMs).toBe(100);
  });

  it('maps a refused connection to NETWORK_OFFLINE', async () => {
    const port = server.port;
    await server.close();
    const error = await rejection(http.getBuffer(`http://127.0.0.1:${port}/x`, { maxBytes: 1024, deadlineMs: 2_000 }));
    expect(error.code).toBe('NETWORK_OFFLINE');
    expect(error.retryable).toBe(true);
    server = await createFaultyServer({});
  });

  it('maps a reset mid-body to NETWORK_RESET', async () => {
    server.setFaults({ resetAfterBytes: 100_000 });
    const error = await rejection(http.getBuffer(server.url('/huge.json'), { maxBytes: TEN_MB, deadlineMs: 5_000 }));
    expect(error.code).toBe('NETWORK_RESET');
  });

  it('stops at once when the caller aborts, with CANCELLED, and the retry wrapper does not retry', async () => {
    server.setFaults({ hangFirst: 5 });
    const controller = new AbortController();
    const pending = withRetry(
      () => http.getBuffer(server.url('/timestamp.json'), { maxBytes: 1024, deadlineMs: 5_000, signal: controller.signal }),
      { operation: 'fetch', logger: silentLogger, policy: fastRetry, signal: controller.signal },
    );
    await until(() => server.requests.length === 1);
    controller.abort();
    const error = await rejection(pending);
    expect(error.code).toBe('CANCELLED');
    expect(server.requests).toHaveLength(1);
  });

  it('sends the configured User-Agent and caller headers', async () => {
    await http.getBuffer(server.url('/timestamp.json'), { maxBytes: 1024, deadlineMs: 2_000, headers: { 'x-device': 'robot-7' } });
    expect(server.requests[0]?.headers).toMatchObject({ 'user-agent': 'otad-test/1', 'x-device': 'robot-7' });
  });

  it('rejects a non-http URL scheme as CONFIG_INVALID', async () => {
    const error = await rejection(http.getBuffer('file:///etc/passwd', { maxBytes: 10, deadlineMs: 1_000 }));
    expect(error.code).toBe('CONFIG_INVALID');
  });
});

describe('http client stream', () => {
  it('streams the body and throws HTTP_NOT_FOUND for a missing file', async () => {
    const response = await http.stream(server.url('/timestamp.json'));
    const chunks: Buffer[] = [];
    for await (const chunk of response.body) chunks.push(chunk);
    expect(Buffer.concat(chunks).toString()).toBe('{"signed":{}}');
    const error = await rejection(http.stream(server.url('/nope')));
    expect(error.code).toBe('HTTP_NOT_FOUND');
  });
});

describe('http client TLS', () => {
  let dir: string;
  let tlsServer: https.Server;
  let tlsUrl: string;
  let caFile: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'otad-tls-'));
    const { keyFile, certFile } = selfSignedCertificate(dir, 'IP:127.0.0.1');
    caFile = certFile;
    tlsServer = https.createServer({ key: readFileSync(keyFile), cert: readFileSync(caFile) }, (_req, res) => res.end('secure'));
    await new Promise<void>((resolve) => tlsServer.listen(0, '127.0.0.1', resolve));
    tlsUrl = `https://127.0.0.1:${(tlsServer.address() as AddressInfo).port}/`;
  });

  afterAll(async () => {
    tlsServer.closeAllConnections();
    await new Promise<void>((resolve) => tlsServer.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses a certificate no trusted CA signed, as a final NETWORK_OFFLINE with details.tls', async () => {
    const error = await rejection(http.getBuffer(tlsUrl, { maxBytes: 100, deadlineMs: 2_000 }));
    expect(error).toMatchObject({ code: 'NETWORK_OFFLINE', retryable: false, details: { tls: true } });
  });

  it('trusts the extra CA bundle from caFile', async () => {
    const client = makeHttp({ caFile });
    try {
      const response = await client.getBuffer(tlsUrl, { maxBytes: 100, deadlineMs: 2_000 });
      expect(response.body.toString()).toBe('secure');
    } finally {
      await client.close();
    }
  });

  it('rejects a caFile without a certificate as CONFIG_INVALID', async () => {
    const bogus = join(dir, 'bogus.pem');
    await writeFile(bogus, 'not a certificate');
    expect(() => makeHttp({ caFile: bogus })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });
});
