/**
 * The target-body GET (src/net/lean-get.ts, behind HttpClient.stream) against real servers on
 * loopback: node:http for well-formed answers, raw TCP servers for what node:http will not send.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/core/logger.js';
import { createHttpClient } from '../../../src/net/http-client.js';
import type { HttpClient, HttpClientOptions } from '../../../src/net/http-client.js';
import { LEAN_RING_BYTES } from '../../../src/net/lean-get.js';
import { rejection } from '../../support/assertions.js';
import { selfSignedCertificate } from '../../support/self-signed.js';

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (closers.length > 0) await closers.pop()!();
});

function client(overrides: Partial<HttpClientOptions> = {}): HttpClient {
  const c = createHttpClient({
    connectTimeoutMs: 2_000,
    headersTimeoutMs: 2_000,
    idleTimeoutMs: 2_000,
    userAgent: 'otad-test/1',
    logger: silentLogger,
    ...overrides,
  });
  closers.push(() => c.close());
  return c;
}

async function httpServer(handler: http.RequestListener): Promise<string> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A TCP server that writes `answer` (bytes or a function of the socket) once the request head is in. */
async function rawServer(answer: Buffer | string | ((socket: net.Socket) => void)): Promise<string> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let seen = '';
    socket.on('data', (data) => {
      if (seen.includes('\r\n\r\n')) return;
      seen += data.toString('latin1');
      if (!seen.includes('\r\n\r\n')) return;
      if (typeof answer === 'function') answer(socket);
      else socket.end(answer);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Reads the whole body, copying each chunk (chunks are only valid until the next is asked for). */
async function readAll(body: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of body) parts.push(Buffer.from(chunk));
  return Buffer.concat(parts);
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

const big = Buffer.alloc(3 * LEAN_RING_BYTES + 12345);
for (let i = 0; i < big.length; i++) big[i] = (i * 7919) & 0xff;

describe('target GET: bodies', () => {

  it('reads a Content-Length body larger than its buffer, byte for byte', async () => {
    const base = await httpServer((_req, res) => {
      res.setHeader('content-length', big.length);
      res.end(big);
    });
    const response = await client().stream(`${base}/pkg`);
    expect(response.status).toBe(200);
    expect(response.headers['content-length']).toBe(String(big.length));
    expect(sha(await readAll(response.body))).toBe(sha(big));
  });

  it('reads a chunked body written in many small pieces', async () => {
    const base = await httpServer(async (_req, res) => {
      for (let at = 0; at < big.length; at += 10_007) {
        if (!res.write(big.subarray(at, at + 10_007))) await new Promise((resolve) => res.once('drain', resolve));
      }
      res.end();
    });
    const response = await client().stream(`${base}/pkg`);
    expect(response.headers['transfer-encoding']).toBe('chunked');
    expect(sha(await readAll(response.body))).toBe(sha(big));
  });

  it('reads a body that ends with the connection (no length, no chunks)', async () => {
    const base = await rawServer(Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: x\r\n\r\n'), big]));
    const response = await client().stream(`${base}/pkg`);
    expect(sha(await readAll(response.body))).toBe(sha(big));
  });

  it('skips a 100 Continue answer and reads the real one', async () => {
    const base = await rawServer('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    const response = await client().stream(`${base}/pkg`);
    expect(response.status).toBe(200);
    expect((await readAll(response.body)).toString()).toBe('ok');
  });

  it('hands out each chunk in the one reused buffer (a chunk is valid until the next is asked for)', async () => {
    const base = await httpServer((_req, res) => {
      res.setHeader('content-length', big.length);
      res.end(big);
    });
    const response = await client().stream(`${base}/pkg`);
    const backing = new Set<ArrayBufferLike>();
    let total = 0;
    for await (const chunk of response.body) {
      expect(chunk.length).toBeLessThanOrEqual(LEAN_RING_BYTES);
      backing.add(chunk.buffer);
      total += chunk.length;
    }
    expect(total).toBe(big.length);
    // Body bytes that came with the head are copied out once; every other read lands in one buffer.
    expect(backing.size).toBeLessThanOrEqual(2);
  });

  it('sends the Range header again after a redirect to another host, and the 206 comes back', async () => {
    const seen: Array<{ host: string | undefined; range: string | undefined }> = [];
    const target = await httpServer((req, res) => {
      seen.push({ host: req.headers.host, range: req.headers.range });
      res.writeHead(206, { 'content-range': `bytes 3-4/5`, 'content-length': '2' });
      res.end('de');
    });
    const port = new URL(target).port;
    const origin = await httpServer((req, res) => {
      seen.push({ host: req.headers.host, range: req.headers.range });
      res.writeHead(302, { location: `http://localhost:${port}/cdn/pkg` });
      res.end('moved');
    });
    const response = await client().stream(`${origin}/pkg`, { headers: { range: 'bytes=3-' } });
    expect(response.status).toBe(206);
    expect(response.headers['content-range']).toBe('bytes 3-4/5');
    expect((await readAll(response.body)).toString()).toBe('de');
    expect(seen).toEqual([
      { host: new URL(origin).host, range: 'bytes=3-' },
      { host: `localhost:${port}`, range: 'bytes=3-' },
    ]);
  });
});

describe('target GET: refusals', () => {
  it('stops after five redirects with HTTP_STATUS', async () => {
    let hops = 0;
    const base = await httpServer((req, res) => {
      hops += 1;
      res.writeHead(307, { location: `/hop${hops}` });
      res.end();
    });
    const error = await rejection(client().stream(`${base}/start`));
    expect(error.code).toBe('HTTP_STATUS');
    expect(error.message).toMatch(/redirected more than 5 times/);
    expect(hops).toBe(6);
  });

  it('refuses a redirect to a scheme other than http and https as HTTP_STATUS, without following it', async () => {
    const base = await httpServer((_req, res) => {
      res.writeHead(302, { location: 'file:///etc/shadow' });
      res.end();
    });
    const error = await rejection(client().stream(`${base}/pkg`));
    expect(error.code).toBe('HTTP_STATUS');
    expect(error.message).toMatch(/redirected to a file: URL/);
    expect(error.retryable).toBe(false);
  });

  it('maps a 404 to HTTP_NOT_FOUND and a 503 to a retryable error', async () => {
    const base = await httpServer((req, res) => {
      res.statusCode = req.url === '/gone' ? 404 : 503;
      res.end('no');
    });
    expect((await rejection(client().stream(`${base}/gone`))).code).toBe('HTTP_NOT_FOUND');
    expect((await rejection(client().stream(`${base}/busy`))).retryable).toBe(true);
  });

  it('refuses a response head over 64 KiB as NETWORK_RESET', async () => {
    const base = await rawServer(`HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(70 * 1024)}\r\nContent-Length: 0\r\n\r\n`);
    const error = await rejection(client().stream(`${base}/pkg`));
    expect(error.code).toBe('NETWORK_RESET');
    expect(error.message).toMatch(/response head over 65536 bytes/);
  });

  it('refuses an answer that is not HTTP/1.x', async () => {
    const base = await rawServer('SSH-2.0-OpenSSH_9.2\r\n\r\n');
    const error = await rejection(client().stream(`${base}/pkg`));
    expect(error).toMatchObject({ code: 'NETWORK_RESET' });
    expect(error.message).toMatch(/did not answer with HTTP\/1\.1/);
  });

  it('refuses two different Content-Length values', async () => {
    const base = await rawServer('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!');
    const error = await rejection(client().stream(`${base}/pkg`));
    expect(error.code).toBe('NETWORK_RESET');
    expect(error.message).toMatch(/invalid Content-Length/);
  });

  it('hands out the bytes that came, then NETWORK_RESET, when a chunked body is malformed', async () => {
    const base = await rawServer('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\nnot-hex\r\n');
    const response = await client().stream(`${base}/pkg`);
    const got: string[] = [];
    const error = await rejection((async () => {
      for await (const chunk of response.body) got.push(chunk.toString());
    })());
    expect(error.code).toBe('NETWORK_RESET');
    expect(error.message).toMatch(/malformed chunked body/);
    expect(got.join('')).toBe('abcd');
  });

  it('hands out every byte that arrived before a cut, then NETWORK_RESET (a resume starts there)', async () => {
    const base = await rawServer((socket) => {
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n');
      socket.end(Buffer.alloc(300, 0x61));
    });
    const response = await client().stream(`${base}/pkg`);
    let received = 0;
    const error = await rejection((async () => {
      for await (const chunk of response.body) received += chunk.length;
    })());
    expect(error.code).toBe('NETWORK_RESET');
    expect(error.message).toMatch(/in the middle of the body/);
    expect(received).toBe(300);
  });

  it('times out a body that goes silent with NETWORK_TIMEOUT (idle)', async () => {
    const base = await rawServer((socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc'));
    const response = await client({ idleTimeoutMs: 150 }).stream(`${base}/pkg`);
    const error = await rejection(readAll(response.body));
    expect(error).toMatchObject({ code: 'NETWORK_TIMEOUT', details: { timeout: 'idle' } });
  });

  it('times out a server that never answers with NETWORK_TIMEOUT (headers)', async () => {
    const base = await rawServer(() => {});
    const error = await rejection(client({ headersTimeoutMs: 150 }).stream(`${base}/pkg`));
    expect(error).toMatchObject({ code: 'NETWORK_TIMEOUT', details: { timeout: 'headers' } });
  });

  it('stops mid-body when the caller aborts, with CANCELLED, and closes the connection', async () => {
    let closed = false;
    const base = await rawServer((socket) => {
      socket.on('close', () => (closed = true));
      socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${10 * 1024 * 1024}\r\n\r\n`);
      socket.write(Buffer.alloc(64 * 1024));
    });
    const controller = new AbortController();
    const response = await client().stream(`${base}/pkg`, { signal: controller.signal });
    const error = await rejection((async () => {
      for await (const _chunk of response.body) controller.abort();
    })());
    expect(error.code).toBe('CANCELLED');
    while (!closed) await new Promise((resolve) => setTimeout(resolve, 5));
  });

  it('maps a refused connection to NETWORK_OFFLINE', async () => {
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    expect((await rejection(client().stream(`http://127.0.0.1:${port}/pkg`))).code).toBe('NETWORK_OFFLINE');
  });

  it('refuses a header value with a line break before anything is sent', async () => {
    let connections = 0;
    const base = await rawServer(() => (connections += 1));
    const error = await rejection(client().stream(`${base}/pkg`, { headers: { range: 'bytes=0-\r\nX-Evil: 1' } }));
    expect(error.code).toBe('INTERNAL');
    expect(connections).toBe(0);
  });
});

describe('target GET: TLS', () => {
  let dir: string;
  let base: string;
  let caFile: string;
  let server: https.Server;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'otad-lean-tls-'));
    const { keyFile, certFile } = selfSignedCertificate(dir, 'localhost');
    caFile = certFile;
    server = https.createServer({ key: readFileSync(keyFile), cert: readFileSync(caFile) }, (req, res) => res.end(req.url === '/big' ? big : 'secure body'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `https://localhost:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  });

  it('reads over TLS with the CA from caFile, checking the host name', async () => {
    const response = await client({ caFile }).stream(`${base}/pkg`);
    expect((await readAll(response.body)).toString()).toBe('secure body');
  });

  it('reads a large body over TLS intact while the caller is slow to take each chunk', async () => {
    // TLS hands over the records it decrypted after the pause was asked for: they must land in
    // free room of the ring, never over a chunk the caller still holds. A server in a process of
    // its own sends as fast as it can, so the records pile up while the caller waits.
    const script = `
      const https = require('node:https'); const fs = require('node:fs');
      const body = Buffer.alloc(${8 << 20}); for (let i = 0; i < body.length; i++) body[i] = (i * 7919) & 0xff;
      const server = https.createServer({ key: fs.readFileSync(process.argv[1]), cert: fs.readFileSync(process.argv[2]) }, (req, res) => res.end(body));
      server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'));`;
    const child = spawn(process.execPath, ['-e', script, join(dir, 'key.pem'), caFile], { stdio: ['ignore', 'pipe', 'inherit'] });
    closers.push(async () => {
      child.kill('SIGKILL');
      await once(child, 'exit').catch(() => {});
    });
    const [line] = (await once(child.stdout!, 'data')) as [Buffer];
    const expected = Buffer.alloc(8 << 20);
    for (let i = 0; i < expected.length; i++) expected[i] = (i * 7919) & 0xff;
    const response = await client({ caFile }).stream(`https://localhost:${line.toString().trim()}/big`);
    const copy = createHash('sha256');
    let chunks = 0;
    for await (const chunk of response.body) {
      const before = Buffer.from(chunk);
      // Like the downloader's positional write: the socket's events run while the caller waits.
      await new Promise((resolve) => setTimeout(resolve, chunks % 16 === 0 ? 5 : 0));
      expect(chunk.equals(before)).toBe(true);
      copy.update(chunk);
      chunks += 1;
    }
    expect(copy.digest('hex')).toBe(sha(expected));
  });

  it('refuses a certificate no trusted CA signed, as a final NETWORK_OFFLINE with details.tls', async () => {
    const error = await rejection(client().stream(`${base}/pkg`));
    expect(error).toMatchObject({ code: 'NETWORK_OFFLINE', retryable: false, details: { tls: true } });
  });

  it('refuses a certificate for another host name even from a trusted CA', async () => {
    const port = new URL(base).port;
    const error = await rejection(client({ caFile }).stream(`https://127.0.0.1:${port}/pkg`));
    expect(error).toMatchObject({ code: 'NETWORK_OFFLINE', retryable: false, details: { tls: true } });
  });
});
