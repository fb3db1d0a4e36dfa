/**
 * `otactl watch`: the current state first, then transitions, progress and notifications live from
 * the Socket.IO stream. With --until STATE it exits 0 once a product is in that state (at once if
 * it already is); with --timeout it gives up with exit 6. The stream is subscribed before the
 * status is read, so a transition between the two is seen (perhaps twice), never missed.
 */
import { ApiClientError } from '../../api/client.js';
import type { Envelope, ResyncEnvelope } from '../../api/socket.js';
import { parseDuration } from '../../core/duration.js';
import { OtaError } from '../../core/errors.js';
import type { DaemonStatus } from '../../daemon/control.js';
import type { ProgressMessage } from '../../daemon/event-bus.js';
import { type CliContext, iso, out } from './context.js';
import { WatchTimeout } from './exit-codes.js';
import { BAR_FORMAT, barPayload, ProgressLines } from './progress.js';
import { logLineText } from './reading.js';
import { productLine } from './status.js';

export interface WatchOptions {
  product?: string;
  until?: string;
  sinceSeq?: string;
  logs?: boolean;
  timeout?: string;
}

export async function watch(ctx: CliContext, opts: WatchOptions): Promise<void> {
  let timeoutMs: number | null = null;
  if (opts.timeout !== undefined) {
    try {
      timeoutMs = parseDuration(opts.timeout);
    } catch (error) {
      throw new OtaError('CONFIG_INVALID', `--timeout ${opts.timeout}: ${(error as Error).message}`);
    }
  }
  let sinceSeq: number | null = null;
  if (opts.sinceSeq !== undefined) {
    sinceSeq = Number(opts.sinceSeq);
    if (!Number.isInteger(sinceSeq) || sinceSeq < 0) throw new OtaError('CONFIG_INVALID', `--since-seq ${opts.sinceSeq}: expected a transition sequence number (an integer, 0 or more)`);
  }
  const c = await ctx.client();
  const json = ctx.json;
  const interactive = !json && process.stdout.isTTY === true && process.stderr.isTTY === true;
  const [{ io: connectSocket }, cliProgress] = await Promise.all([import('socket.io-client'), interactive ? import('cli-progress').then((m) => m.default) : null]);

  const token = c.token;
  const topics = ['transition', 'progress', 'notification', ...(opts.logs ? ['log'] : [])];
  const socket = connectSocket(c.baseUrl, {
    path: '/socket.io',
    transports: ['websocket'],
    auth: { token, topics, ...(sinceSeq !== null ? { lastSeq: sinceSeq } : {}) },
    reconnectionDelayMax: 5000,
  });
  let lastSeq = sinceSeq;
  const lines = new ProgressLines();
  let bar: { key: string; bar: InstanceType<NonNullable<typeof cliProgress>['SingleBar']> } | null = null;
  const stopBar = () => {
    bar?.bar.stop();
    bar = null;
  };
  const print = (line: string) => {
    stopBar();
    out(line);
  };
  const shown = (product: string | undefined) => !opts.product || product === undefined || product === opts.product;

  await new Promise<void>((resolve, reject) => {
    let finished = false;
    const done = (error?: Error) => {
      if (finished) return;
      finished = true;
      stopBar();
      socket.disconnect();
      if (error) reject(error);
      else resolve();
    };
    if (timeoutMs !== null) {
      const message = !opts.until ? `stopped watching after ${opts.timeout}` : opts.product ? `${opts.product} did not reach "${opts.until}" within ${opts.timeout}` : `no product reached "${opts.until}" within ${opts.timeout}`;
      setTimeout(() => done(new WatchTimeout(message)), timeoutMs).unref();
    }

    // Messages that arrive while the current state is being read wait for it: the state comes first.
    let backlog: Envelope[] | null = null;
    let statusRead = false;
    socket.on('connect', () => {
      process.stderr.write(`watching otad at ${c.baseUrl}\n`);
      if (statusRead) return; // a reconnection: the stream resumes from lastSeq
      statusRead = true;
      backlog = [];
      c.request<DaemonStatus>('GET', '/api/v1/status').then(
        (s) => {
          const products = s.products.filter((p) => shown(p.product));
          if (json) out(JSON.stringify({ v: 1, type: 'status', time: s.now, seq: null, payload: s }));
          else for (const p of products) out(`${iso(s.now)} ${productLine(p)}`);
          if (opts.until && products.some((p) => p.state === opts.until)) return done();
          const queued = backlog ?? [];
          backlog = null;
          for (const m of queued) onMessage(m);
        },
        (error: unknown) => done(error as Error),
      );
    });
    socket.on('connect_error', (e: Error & { data?: { code?: string } }) => {
      if (e.data?.code === 'API_UNAUTHORIZED') done(new ApiClientError(401, 'API_UNAUTHORIZED', `the stream refused the token: ${e.message}`));
      else if (!socket.active) done(new ApiClientError(null, 'UNREACHABLE', `otad is not reachable at ${c.baseUrl}: ${e.message}`));
    });
    // On reconnection the daemon is asked for what was missed.
    socket.io.on('reconnect_attempt', () => {
      if (lastSeq !== null) socket.auth = { token, topics, lastSeq };
    });
    socket.on('message', (m: Envelope) => {
      if (backlog !== null) backlog.push(m);
      else onMessage(m);
    });

    function onMessage(m: Envelope): void {
      if (finished) return;
      const product = (m.payload as { product?: string }).product;
      if (!shown(product)) return;
      if (m.type === 'transition' || (m as { type: string }).type === 'resync') lastSeq = m.seq;
      if (json) out(JSON.stringify(m));
      else if ((m as { type: string }).type === 'resync') {
        const r = (m as unknown as ResyncEnvelope).payload;
        print(`otad no longer holds the transitions after ${r.lastSeq} (${r.reason}); continuing from ${r.latestSeq} (otactl history and status show the rest)`);
      } else if (m.type === 'transition') {
        const t = m.payload as Envelope<'transition'>['payload'];
        print(`${iso(t.at)} ${t.product}: ${t.from} → ${t.to}  (${t.cause})`);
      } else if (m.type === 'progress') showProgress(m.payload as ProgressMessage, m.time);
      else if (m.type === 'notification') {
        const n = m.payload as Envelope<'notification'>['payload'];
        print(`${iso(m.time)} ${n.product}: ${n.kind}${n.version ? ` ${n.version}` : ''}${n.error ? ` (${n.error.code})` : ''}`);
      } else print(logLineText(m.payload as Envelope<'log'>['payload']));
      if (opts.until && m.type === 'transition' && (m.payload as { to: string }).to === opts.until) done();
    }

    function showProgress(p: ProgressMessage, time: number): void {
      if (!cliProgress) {
        const line = lines.next(p);
        if (line) out(`${iso(time)} ${line}`);
        return;
      }
      const key = `${p.product}/${p.runId}/${p.step}`;
      if (bar?.key !== key) {
        stopBar();
        const b = new cliProgress.SingleBar({ stream: process.stderr, format: BAR_FORMAT, hideCursor: true }, cliProgress.Presets.shades_classic);
        b.start(p.total ?? p.bytes, p.bytes, barPayload(p));
        bar = { key, bar: b };
      } else {
        bar.bar.setTotal(p.total ?? p.bytes);
        bar.bar.update(p.bytes, barPayload(p));
      }
    }
  });
}
