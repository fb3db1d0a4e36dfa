/**
 * Health checks of a product (its definition lists them) and the probes that run them. A probe
 * answers one question once: is this aspect of the new release healthy right now? Probation
 * (probation.ts) decides what repeated answers mean.
 */
import * as fs from 'node:fs/promises';
import path from 'node:path';
import { OtaError } from '../core/errors.js';
import { runProcess } from '../hooks/run-process.js';
import type { ServiceManager } from '../services/service-manager.js';

export type HealthCheck =
  /** The unit is active and systemd did not restart it during probation. */
  | { kind: 'unit'; unit: string; name?: string; timeoutMs?: number }
  /** A loopback HTTP endpoint answers with the expected status (default: any 2xx). */
  | { kind: 'http'; url: string; expectStatus?: number | number[]; timeoutMs: number; name?: string }
  /** A command exits 0. */
  | { kind: 'command'; command: string[]; timeoutMs: number; name?: string }
  /**
   * The running release reports the expected version, through a command's output or a file
   * (relative paths are inside the release). `expect` defaults to the version being validated.
   */
  | { kind: 'version'; command?: string[]; file?: string; expect?: string; timeoutMs?: number; name?: string };

export interface ProbeOutcome {
  ok: boolean;
  message: string;
  /** The probe itself noticed its deadline (e.g. the HTTP request timed out). */
  timedOut?: boolean;
  details?: Record<string, unknown>;
}

export interface HealthProbe {
  name: string;
  kind: HealthCheck['kind'];
  timeoutMs: number;
  /** Never rejects for an unhealthy target: returns { ok: false }. May reject on bugs. */
  run(signal: AbortSignal): Promise<ProbeOutcome>;
}

export interface ProbeDeps {
  services: ServiceManager;
  /** The release being validated: relative version files resolve in it, commands run in it. */
  releaseDir?: string;
  /** The version being validated: the default `expect` of version checks. */
  expectedVersion?: string;
  /** Injected for tests; default global fetch (undici). */
  fetch?: typeof fetch;
}

export const DEFAULT_CHECK_TIMEOUT_MS = 10_000;

export function checkName(check: HealthCheck): string {
  if (check.name !== undefined) return check.name;
  switch (check.kind) {
    case 'unit':
      return `unit:${check.unit}`;
    case 'http':
      return check.url;
    case 'command':
      return `command:${check.command.join(' ')}`;
    case 'version':
      return `version:${check.file ?? check.command?.join(' ') ?? '?'}`;
  }
}

export function createProbes(checks: readonly HealthCheck[], deps: ProbeDeps): HealthProbe[] {
  const probes = checks.map((check) => createProbe(check, deps));
  const names = new Set<string>();
  for (const p of probes) {
    if (names.has(p.name)) throw new OtaError('CONFIG_INVALID', `two health checks are named "${p.name}"; give one a distinct name`, { details: { name: p.name } });
    names.add(p.name);
  }
  return probes;
}

export function createProbe(check: HealthCheck, deps: ProbeDeps): HealthProbe {
  const name = checkName(check);
  const timeoutMs = check.timeoutMs ?? DEFAULT_CHECK_TIMEOUT_MS;
  if (!(timeoutMs > 0)) throw new OtaError('CONFIG_INVALID', `health check ${name}: timeoutMs must be positive, got ${timeoutMs}`, { details: { name } });
  const base = { name, kind: check.kind, timeoutMs };
  switch (check.kind) {
    case 'unit':
      return { ...base, run: unitProbe(check.unit, deps.services) };
    case 'http':
      return { ...base, run: httpProbe(name, check.url, check.expectStatus, timeoutMs, deps.fetch ?? fetch) };
    case 'command':
      if (check.command.length === 0) throw new OtaError('CONFIG_INVALID', `health check ${name}: command is empty`, { details: { name } });
      return { ...base, run: commandProbe(check.command, timeoutMs, deps.releaseDir) };
    case 'version':
      return { ...base, run: versionProbe(name, check, timeoutMs, deps) };
  }
}

function unitProbe(unit: string, services: ServiceManager): HealthProbe['run'] {
  // NRestarts at the first look is the baseline: any increase during probation means the unit
  // crashed and systemd brought it back, which an "active" reading alone would hide.
  let baseline: number | null | undefined;
  return async () => {
    let status;
    try {
      status = await services.status(unit);
    } catch (error) {
      return { ok: false, message: `could not read the status of ${unit}: ${(error as Error).message}` };
    }
    if (baseline === undefined) baseline = status.restarts;
    const details = { state: status.state, restarts: status.restarts, baselineRestarts: baseline };
    if (!status.active) return { ok: false, message: `${unit} is ${status.state}, expected active`, details };
    if (baseline !== null && status.restarts !== null && status.restarts > baseline) {
      return { ok: false, message: `${unit} was restarted ${status.restarts - baseline} time(s) during probation`, details };
    }
    return { ok: true, message: `${unit} is ${status.state}`, details };
  };
}

const LOOPBACK_HOSTS = new Set(['localhost', '[::1]']);

/** Health endpoints are the robot's own: only loopback addresses are probed. */
export function assertLoopbackUrl(url: string, name: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new OtaError('CONFIG_INVALID', `health check ${name}: "${url}" is not a URL`, { details: { url } });
  }
  const host = parsed.hostname;
  const loopback = LOOPBACK_HOSTS.has(host) || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
  if (!loopback || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) {
    throw new OtaError('CONFIG_INVALID', `health check ${name}: ${url} must be an http(s) URL on a loopback address (127.0.0.0/8, ::1, localhost)`, {
      details: { url },
    });
  }
  return parsed;
}

function httpProbe(name: string, url: string, expectStatus: number | number[] | undefined, timeoutMs: number, doFetch: typeof fetch): HealthProbe['run'] {
  const target = assertLoopbackUrl(url, name);
  const expected = expectStatus === undefined ? null : Array.isArray(expectStatus) ? expectStatus : [expectStatus];
  return async (signal) => {
    const deadline = AbortSignal.timeout(timeoutMs);
    try {
      const response = await doFetch(target, { signal: AbortSignal.any([signal, deadline]), redirect: 'manual', headers: { 'user-agent': 'otad-health' } });
      await response.body?.cancel().catch(() => {});
      const ok = expected === null ? response.status >= 200 && response.status < 300 : expected.includes(response.status);
      const want = expected === null ? '2xx' : expected.join(' or ');
      return { ok, message: `${url} answered ${response.status}${ok ? '' : `, expected ${want}`}`, details: { status: response.status } };
    } catch (error) {
      if (deadline.aborted) return { ok: false, timedOut: true, message: `${url} did not answer within ${timeoutMs} ms` };
      const cause = (error as { cause?: { code?: string } }).cause?.code;
      return { ok: false, message: `${url} could not be reached: ${cause ?? (error as Error).message}` };
    }
  };
}

function commandProbe(command: string[], timeoutMs: number, cwd: string | undefined): HealthProbe['run'] {
  return async (signal) => {
    const result = await runProcess({ command, timeoutMs, killGraceMs: 1000, signal, maxOutputChars: 4096, ...(cwd === undefined ? {} : { cwd }) });
    const tail = result.output.trim().split('\n').slice(-5).join('\n');
    if (result.spawnError !== undefined) return { ok: false, message: `${command[0]} could not be started: ${result.spawnError.message}` };
    if (result.timedOut) return { ok: false, timedOut: true, message: `${command.join(' ')} did not finish within ${timeoutMs} ms`, details: { output: tail } };
    if (result.exitCode !== 0) {
      return { ok: false, message: `${command.join(' ')} exited with ${result.exitCode ?? result.signal}, expected 0`, details: { output: tail } };
    }
    return { ok: true, message: `${command.join(' ')} exited 0` };
  };
}

/** The reported version matches when the whole text, or one of its words (optionally "v"-prefixed), equals it. */
export function reportsVersion(text: string, expected: string): boolean {
  const trimmed = text.trim();
  if (trimmed === expected) return true;
  return trimmed.split(/[\s,;:=()"'[\]{}]+/).some((word) => word === expected || word === `v${expected}`);
}

function versionProbe(name: string, check: Extract<HealthCheck, { kind: 'version' }>, timeoutMs: number, deps: ProbeDeps): HealthProbe['run'] {
  const expected = check.expect ?? deps.expectedVersion;
  if (expected === undefined) {
    throw new OtaError('CONFIG_INVALID', `health check ${name}: no expected version (set "expect" or validate a known release)`, { details: { name } });
  }
  if ((check.command === undefined) === (check.file === undefined)) {
    throw new OtaError('CONFIG_INVALID', `health check ${name}: a version check needs exactly one of "command" or "file"`, { details: { name } });
  }
  const command = check.command;
  const file = check.file;
  return async (signal) => {
    let text: string;
    if (command !== undefined) {
      const result = await runProcess({ command, timeoutMs, killGraceMs: 1000, signal, maxOutputChars: 4096, ...(deps.releaseDir === undefined ? {} : { cwd: deps.releaseDir }) });
      if (result.timedOut) return { ok: false, timedOut: true, message: `${command.join(' ')} did not finish within ${timeoutMs} ms` };
      if (result.exitCode !== 0) return { ok: false, message: `${command.join(' ')} exited with ${result.exitCode ?? result.signal ?? result.spawnError?.message}` };
      text = result.output;
    } else {
      const full = path.resolve(deps.releaseDir ?? '.', file as string);
      try {
        const handle = await fs.open(full, 'r');
        try {
          const { buffer, bytesRead } = await handle.read({ buffer: Buffer.alloc(64 * 1024) });
          text = buffer.subarray(0, bytesRead).toString('utf8');
        } finally {
          await handle.close();
        }
      } catch (error) {
        return { ok: false, message: `version file ${full} could not be read: ${(error as Error).message}` };
      }
    }
    const found = text.trim().split('\n')[0]?.slice(0, 200) ?? '';
    return reportsVersion(text, expected)
      ? { ok: true, message: `reports ${expected}` }
      : { ok: false, message: `reports "${found}", expected ${expected}`, details: { found, expected } };
  };
}
