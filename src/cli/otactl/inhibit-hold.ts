/**
 * `otactl inhibit hold HOLDER -r REASON` without --duration: an inhibit that lasts exactly as long
 * as this command runs (or until --for).
 *  - over D-Bus (io.otad.Manager1.Inhibit), it keeps the returned file descriptor open; when the
 *    command exits, is stopped or is SIGKILLed, the kernel closes the fd and otad releases the
 *    inhibitor at once;
 *  - over REST, it takes a lease of --ttl and renews it by heartbeat every third of it; when the
 *    command ends normally it releases the lease, when it is SIGKILLed the lease runs out within
 *    the TTL.
 * --via auto takes D-Bus when the configuration enables otad's D-Bus service, else REST.
 */
import { closeSync } from 'node:fs';
import { ApiClientError } from '../../api/client.js';
import { parseDuration } from '../../core/duration.js';
import { OtaError } from '../../core/errors.js';
import { type CliContext, out, printJson } from './context.js';

export interface ForegroundHoldOptions {
  reason: string;
  for?: string;
  via?: string;
  ttl?: string;
  bus?: string;
}

function durationOption(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  try {
    return parseDuration(value);
  } catch (error) {
    throw new OtaError('CONFIG_INVALID', `${name} ${value}: ${(error as Error).message}`);
  }
}

/** Resolves when the command should stop: --for elapsed, SIGINT, SIGTERM or SIGHUP. */
function untilStopped(forMs: number | undefined): Promise<string> {
  return new Promise((resolve) => {
    const done = (why: string) => {
      for (const s of signals) process.off(s, handlers[s]!);
      clearTimeout(timer);
      resolve(why);
    };
    const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
    const handlers: Partial<Record<(typeof signals)[number], () => void>> = {};
    for (const s of signals) {
      handlers[s] = () => done(`stopped by ${s}`);
      process.on(s, handlers[s]!);
    }
    const timer = forMs === undefined ? undefined : setTimeout(() => done(`--for ${formatMs(forMs)} passed`), forMs);
  });
}

const formatMs = (ms: number) => (ms % 60_000 === 0 ? `${ms / 60_000}m` : ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`);

export async function holdInForeground(ctx: CliContext, holder: string, opts: ForegroundHoldOptions): Promise<void> {
  const forMs = durationOption('--for', opts.for);
  const ttlMs = durationOption('--ttl', opts.ttl) ?? 60_000;
  if (ttlMs < 3000) throw new OtaError('CONFIG_INVALID', `--ttl ${opts.ttl}: at least 3s, so a heartbeat every third of it has time to arrive`);
  const via = opts.via ?? 'auto';
  if (!['auto', 'dbus', 'rest'].includes(via)) throw new OtaError('CONFIG_INVALID', `--via ${via}: use auto, dbus or rest`);
  const cfg = await ctx.config();
  const useDbus = via === 'dbus' || (via === 'auto' && (opts.bus !== undefined || cfg.dbus.enabled));
  if (useDbus) await holdOverDbus(ctx, holder, opts.reason, forMs, opts.bus ?? cfg.dbus.bus, cfg.dbus.name);
  else await holdOverRest(ctx, holder, opts.reason, forMs, ttlMs);
}

async function holdOverDbus(ctx: CliContext, holder: string, reason: string, forMs: number | undefined, bus: string, name: string): Promise<void> {
  await import('../../api/usocket-compat.js');
  const { FD_PASSING } = await import('../../api/dbus.js');
  if (!FD_PASSING) throw new OtaError('CONFIG_INVALID', 'this otactl cannot receive file descriptors over D-Bus (the optional module usocket is not built); use --via rest');
  const { default: dbus } = await import('dbus-next');
  const opts = { negotiateUnixFd: true } as { negotiateUnixFd: boolean; busAddress?: string };
  const conn = bus === 'system' ? dbus.systemBus(opts) : bus === 'session' ? dbus.sessionBus(opts) : dbus.sessionBus({ ...opts, busAddress: bus });
  let fd: number;
  try {
    const manager = (await conn.getProxyObject(name, '/io/otad/Daemon1')).getInterface('io.otad.Manager1');
    fd = (await manager.Inhibit!(holder, reason, 'block')) as number;
  } catch (error) {
    conn.disconnect();
    const e = error as { type?: string; text?: string; message?: string };
    if (e.type?.startsWith('io.otad.Error.')) throw new OtaError('API_INVALID_REQUEST', `otad refused the inhibitor: ${e.type.slice('io.otad.Error.'.length)}: ${e.text ?? ''}`);
    throw new ApiClientError(null, 'UNREACHABLE', `otad's D-Bus service ${name} is not reachable on bus "${bus}" (${e.text ?? e.message ?? String(error)}); is otad running with dbus.enabled? (or use --via rest)`);
  }
  // The signal handlers are in place before the line saying it is held: whoever reads that line
  // and stops the command (SIGTERM) gets the release and exit 0, never the default kill.
  const stopped = untilStopped(forMs);
  if (ctx.json) printJson({ holder, reason, via: 'dbus', fd, until: forMs === undefined ? null : Date.now() + forMs });
  else out(`inhibit held by ${holder} over D-Bus while this command runs${forMs === undefined ? '' : ` (at most ${formatMs(forMs)})`}: no update of any product starts; stop it (Ctrl-C) to release it, and if it dies the inhibit ends with it`);
  // The bus connection is not needed while holding; the fd alone keeps the inhibitor.
  conn.disconnect();
  const keepAlive = setInterval(() => undefined, 1 << 30);
  const why = await stopped;
  clearInterval(keepAlive);
  closeSync(fd);
  if (!ctx.json) out(`inhibit held by ${holder} released (${why})`);
}

async function holdOverRest(ctx: CliContext, holder: string, reason: string, forMs: number | undefined, ttlMs: number): Promise<void> {
  const client = await ctx.client();
  const end = forMs === undefined ? Infinity : Date.now() + forMs;
  const leaseMs = () => Math.max(1, Math.min(ttlMs, end - Date.now()));
  type Lease = { holder: string; expiresAt: number };
  let r = await client.request<Lease>('POST', '/api/v1/inhibit', { holder, reason, durationMs: leaseMs() });
  const stopped = untilStopped(forMs); // before the line saying it is held, as over D-Bus
  if (ctx.json) printJson({ holder, reason, via: 'rest', ttlMs, expiresAt: r.expiresAt, until: Number.isFinite(end) ? end : null });
  else out(`inhibit held by ${holder} as a lease of ${formatMs(ttlMs)} renewed while this command runs${forMs === undefined ? '' : ` (at most ${formatMs(forMs)})`}: no update of any product starts; stop it (Ctrl-C) to release it, and if it dies the lease runs out within ${formatMs(ttlMs)}`);
  let renewing = Promise.resolve();
  const beat = setInterval(() => {
    renewing = renewing.then(async () => {
      if (Date.now() >= end) return;
      try {
        r = await client.request<Lease>('POST', `/api/v1/inhibit/${encodeURIComponent(holder)}/heartbeat`, { durationMs: leaseMs() });
      } catch (error) {
        if (error instanceof ApiClientError && error.code === 'API_NOT_FOUND') {
          // The lease ran out (this command was suspended longer than the TTL): take a new one.
          process.stderr.write(`otactl: the lease of ${holder} had expired; taking a new one\n`);
          r = await client.request<Lease>('POST', '/api/v1/inhibit', { holder, reason, durationMs: leaseMs() }).catch((e: unknown) => {
            process.stderr.write(`otactl: ${String((e as Error).message)}\n`);
            return r;
          });
        } else process.stderr.write(`otactl: heartbeat of ${holder} failed (${(error as Error).message}); trying again in ${formatMs(Math.round(ttlMs / 3))}\n`);
      }
    });
  }, Math.round(ttlMs / 3));
  const why = await stopped;
  clearInterval(beat);
  await renewing;
  try {
    await client.request('DELETE', `/api/v1/inhibit/${encodeURIComponent(holder)}`);
  } catch (error) {
    // Already gone (it ran out with --for): nothing is held, which is what was asked.
    if (!(error instanceof ApiClientError && error.code === 'API_NOT_FOUND')) throw error;
  }
  if (!ctx.json) out(`inhibit held by ${holder} released (${why})`);
}
