/**
 * The robot-state gates of the pre-check: docked, charging, battery level and trend, stationary,
 * and clock synchronisation, each read from the sources the configuration names (robotState.gates):
 * UPower over D-Bus, what the robot's app reports through the API (REST POST /api/v1/robot-state),
 * a command, or systemd-timedated. Every reading carries the time it was
 * taken; one older than the gate's maxAge, one that cannot be had, or two sources that disagree
 * block the install with their own reason (ROBOT_STATE_STALE, ROBOT_STATE_MISSING,
 * ROBOT_STATE_CONFLICT), never a guess. Asked for every product, whatever its step provider, before
 * the fleet gate (a robot that is not ready takes no slot of its site's budget).
 */
import type { PreCheckInput, PreCheckOutput, PreCheckReason } from '../../machines/types.js';
import type { CommandRunner } from '../adapters/system/check-commands.js';
import type { TimedatedPort } from '../adapters/system/timedated.js';
import { UPOWER_STATE, UPOWER_TYPE, describeDbusError, upowerStateName, type UPowerPort, type UPowerSnapshot } from '../adapters/system/upower.js';
import type { Clock } from '../core/clock.js';
import type { Logger } from '../core/logger.js';
import type { RobotStateConfig } from '../config/schema.js';

export const ROBOT_GATES = ['docked', 'charging', 'battery', 'stationary', 'clock'] as const;
export type RobotGate = (typeof ROBOT_GATES)[number];
export type RobotSource = 'upower' | 'app' | 'command' | 'timedated';
export type BatteryTrend = 'rising' | 'steady' | 'falling';

/** The reason codes the gates add (docs/pre-checks.md, docs/errors.md). */
export const ROBOT_STATE_REASON_CODES = ['ROBOT_STATE_MISSING', 'ROBOT_STATE_STALE', 'ROBOT_STATE_CONFLICT', 'NOT_DOCKED', 'NOT_CHARGING', 'BATTERY_LOW', 'BATTERY_DRAINING', 'ROBOT_MOVING', 'CLOCK_NOT_SYNCED'] as const;

/** Two battery readings further apart than this (percentage points) contradict each other. */
export const BATTERY_AGREEMENT_POINTS = 10;

export interface BatteryValue {
  percent: number;
  /** null: the source does not say. */
  trend: BatteryTrend | null;
}

export interface GateValues {
  docked: boolean;
  charging: boolean;
  battery: BatteryValue;
  stationary: boolean;
  clock: boolean;
}

/** What one source said for one gate: a value with the time it was taken, or why there is none. */
export type SourceReading<G extends RobotGate = RobotGate> =
  | { source: RobotSource; value: GateValues[G]; at: number; detail: string }
  | { source: RobotSource; missing: string };

/** What the app reported through the API; each field keeps the time otad received it. */
export interface AppReport {
  docked?: boolean;
  charging?: boolean;
  batteryPercent?: number;
  batteryTrend?: BatteryTrend;
  stationary?: boolean;
}
type Stamped<T> = { value: T; at: number; by: string };
export type AppReports = { [K in keyof AppReport]?: Stamped<NonNullable<AppReport[K]>> };

export interface GateVerdict {
  gate: RobotGate;
  maxAgeMs: number;
  readings: Array<SourceReading & { ageMs?: number }>;
  reasons: PreCheckReason[];
}

export interface RobotStateStatus {
  /** The gates configured (robotState.gates), in check order. */
  gates: RobotGate[];
  /** What the app reported last, per field, with when and by whom. */
  reports: AppReports;
  /** The last evaluation by a pre-check (null: none yet). */
  lastCheck: { at: number; product: string; verdicts: GateVerdict[] } | null;
}

export interface RobotStatePorts {
  config: () => RobotStateConfig;
  clock: Clock;
  logger: Logger;
  upower: (cfg: RobotStateConfig) => UPowerPort;
  timedated: (cfg: RobotStateConfig) => TimedatedPort;
  commands: CommandRunner;
}

// ----- the pure decision ----------------------------------------------------------------------

const fmtAge = (ms: number): string => (ms >= 120_000 ? `${Math.round(ms / 60_000)} min` : ms >= 1000 ? `${Math.round(ms / 1000)} s` : `${ms} ms`);
const SOURCE_NAMES: Record<RobotSource, string> = { upower: 'UPower', app: 'the app', command: 'the check command', timedated: 'timedated' };

export function describeValue(gate: RobotGate, v: GateValues[RobotGate]): string {
  switch (gate) {
    case 'docked':
      return v ? 'docked' : 'not docked';
    case 'charging':
      return v ? 'charging or on external power' : 'on battery, not charging';
    case 'battery': {
      const b = v as BatteryValue;
      return `battery at ${Math.round(b.percent * 10) / 10}%${b.trend ? `, ${b.trend}` : ''}`;
    }
    case 'stationary':
      return v ? 'stationary' : 'moving';
    case 'clock':
      return v ? 'clock synchronised' : 'clock not synchronised';
  }
}

/** One gate's verdict in words: its reasons (CODE: message), or what its readings said when it passed. */
export function describeGateVerdict(v: GateVerdict): string {
  if (v.reasons.length > 0) return v.reasons.map((r) => `${r.code}: ${r.message}`).join('; ');
  const said = v.readings
    .filter((r): r is Extract<typeof r, { value: unknown }> => !('missing' in r))
    .map((r) => `${SOURCE_NAMES[r.source]} says ${describeValue(v.gate, r.value)} (${r.detail}${r.ageMs === undefined ? '' : `, ${fmtAge(r.ageMs)} old`})`);
  return `passed: ${said.join('; ') || 'no reading'} (maxAge ${fmtAge(v.maxAgeMs)})`;
}

function conflict(gate: RobotGate, a: GateValues[RobotGate], b: GateValues[RobotGate]): boolean {
  if (gate !== 'battery') return a !== b;
  const x = a as BatteryValue;
  const y = b as BatteryValue;
  if (Math.abs(x.percent - y.percent) > BATTERY_AGREEMENT_POINTS) return true;
  return x.trend !== null && y.trend !== null && x.trend !== y.trend && (x.trend === 'rising' ? y.trend === 'falling' : x.trend === 'falling' ? y.trend === 'rising' : false);
}

/** Pure: the reasons one gate's readings give at `now`. */
export function decideGate(gate: RobotGate, readings: SourceReading[], cfg: { maxAge: number; minPercent?: number; trend?: 'any' | 'not-falling' | 'rising' }, now: number): GateVerdict {
  const reasons: PreCheckReason[] = [];
  const aged = readings.map((r) => ('missing' in r ? r : { ...r, ageMs: Math.max(0, now - r.at) }));
  for (const r of aged) {
    if ('missing' in r) {
      reasons.push({ code: 'ROBOT_STATE_MISSING', message: `${gate} gate: no reading from ${SOURCE_NAMES[r.source]}: ${r.missing}` });
    } else if (r.ageMs > cfg.maxAge) {
      reasons.push({
        code: 'ROBOT_STATE_STALE',
        message: `${gate} gate: the reading from ${SOURCE_NAMES[r.source]} (${describeValue(gate, r.value)}, ${r.detail}) is ${fmtAge(r.ageMs)} old, older than robotState.gates.${gate}.maxAge ${fmtAge(cfg.maxAge)}`,
      });
    }
  }
  const verdict = (): GateVerdict => ({ gate, maxAgeMs: cfg.maxAge, readings: aged, reasons });
  // Nothing is concluded from a reading that is missing or too old.
  if (reasons.length > 0) return verdict();
  const good = aged.filter((r): r is Extract<typeof r, { value: unknown }> => !('missing' in r));
  for (let i = 1; i < good.length; i++) {
    const a = good[0]!;
    const b = good[i]!;
    if (conflict(gate, a.value, b.value)) {
      reasons.push({
        code: 'ROBOT_STATE_CONFLICT',
        message: `${gate} gate: ${SOURCE_NAMES[a.source]} says ${describeValue(gate, a.value)} (${a.detail}) but ${SOURCE_NAMES[b.source]} says ${describeValue(gate, b.value)} (${b.detail})`,
      });
    }
  }
  if (reasons.length > 0 || good.length === 0) return verdict();
  const first = good[0]!;
  const from = good.map((r) => SOURCE_NAMES[r.source]).join(' and ');
  switch (gate) {
    case 'docked':
      if (first.value !== true) reasons.push({ code: 'NOT_DOCKED', message: `the robot is not docked (${from}: ${first.detail}) and robotState.gates.docked requires it` });
      break;
    case 'charging':
      if (first.value !== true) reasons.push({ code: 'NOT_CHARGING', message: `the robot is on battery, not charging (${from}: ${first.detail}) and robotState.gates.charging requires charging` });
      break;
    case 'stationary':
      if (first.value !== true) reasons.push({ code: 'ROBOT_MOVING', message: `the robot is moving (${from}: ${first.detail}) and robotState.gates.stationary requires it to stand still` });
      break;
    case 'clock':
      if (first.value !== true) reasons.push({ code: 'CLOCK_NOT_SYNCED', message: `the clock is not synchronised (${from}: ${first.detail}); TUF expiry checks need a synchronised clock (robotState.gates.clock)` });
      break;
    case 'battery': {
      const min = cfg.minPercent ?? 0;
      const lowest = Math.min(...good.map((r) => (r.value as BatteryValue).percent));
      if (lowest < min) reasons.push({ code: 'BATTERY_LOW', message: `battery at ${Math.round(lowest * 10) / 10}% (${from}), below the minimum of ${min}% (robotState.gates.battery.minPercent)` });
      const want = cfg.trend ?? 'any';
      if (want !== 'any') {
        const trends = good.map((r) => (r.value as BatteryValue).trend).filter((t): t is BatteryTrend => t !== null);
        if (trends.length === 0) {
          reasons.push({ code: 'ROBOT_STATE_MISSING', message: `battery gate: no source says whether the battery is charging or discharging, and robotState.gates.battery.trend is ${want}` });
        } else if (want === 'not-falling' ? trends.includes('falling') : !trends.every((t) => t === 'rising')) {
          reasons.push({ code: 'BATTERY_DRAINING', message: `the battery is ${trends.includes('falling') ? 'discharging' : 'not charging'} (${from}) and robotState.gates.battery.trend is ${want}` });
        }
      }
      break;
    }
  }
  return verdict();
}

// ----- the sources -------------------------------------------------------------------------------

/** UPower's battery: the DisplayDevice, timed by its UpdateTime (or the newest battery's, when it has none). */
export function upowerReading(gate: RobotGate, snap: UPowerSnapshot): SourceReading {
  const source = 'upower' as const;
  if (gate === 'docked') {
    // OnBattery decides; the line power devices are named in the detail. Both change by event
    // (udev), not by polling: the reading is as fresh as this read.
    const lines = snap.devices.filter((d) => d.type === UPOWER_TYPE.linePower);
    const name = (p: string) => p.split('/').at(-1);
    const power = lines.length === 0 ? 'no line power device' : lines.map((d) => `${name(d.path)} Online=${d.online}`).join(', ');
    return { source, value: !snap.onBattery, at: snap.readAt, detail: `OnBattery=${snap.onBattery}, ${power}` };
  }
  const d = snap.display;
  if (!d.isPresent) return { source, missing: 'UPower reports no battery (DisplayDevice IsPresent=false)' };
  if (d.state === UPOWER_STATE.unknown) return { source, missing: 'UPower reports the battery state as unknown (DisplayDevice State=0)' };
  const batteries = snap.devices.filter((x) => x.type === UPOWER_TYPE.battery && x.powerSupply);
  const updated = d.updateTime > 0 ? d.updateTime : Math.max(0, ...batteries.map((b) => b.updateTime));
  if (updated === 0) return { source, missing: 'UPower gives no UpdateTime for the battery, so the reading cannot be dated' };
  const at = updated * 1000;
  const detail = `DisplayDevice Percentage=${Math.round(d.percentage * 10) / 10} State=${d.state} (${upowerStateName(d.state)}), updated ${new Date(at).toISOString()}`;
  if (gate === 'charging') {
    const charging = d.state === UPOWER_STATE.charging || d.state === UPOWER_STATE.fullyCharged || d.state === UPOWER_STATE.pendingCharge;
    return { source, value: charging, at, detail };
  }
  const trend: BatteryTrend | null =
    d.state === UPOWER_STATE.charging ? 'rising' : d.state === UPOWER_STATE.discharging || d.state === UPOWER_STATE.empty ? 'falling' : 'steady';
  return { source, value: { percent: d.percentage, trend }, at, detail };
}

export function appReading(gate: RobotGate, reports: AppReports): SourceReading {
  const source = 'app' as const;
  const by = (s: Stamped<unknown>) => `reported by ${s.by} at ${new Date(s.at).toISOString()}`;
  if (gate === 'battery') {
    const p = reports.batteryPercent;
    if (!p) return { source, missing: 'the app has not reported batteryPercent since otad started' };
    const t = reports.batteryTrend;
    // The trend counts only when it was reported with (or after) the level.
    const trend = t && t.at >= p.at ? t.value : null;
    return { source, value: { percent: p.value, trend }, at: p.at, detail: by(p) };
  }
  if (gate === 'clock') return { source, missing: 'the app does not report the clock' };
  const r = reports[gate];
  if (!r) return { source, missing: `the app has not reported ${gate} since otad started` };
  return { source, value: r.value, at: r.at, detail: by(r) };
}

const TRENDS: Record<string, BatteryTrend> = { rising: 'rising', charging: 'rising', steady: 'steady', full: 'steady', falling: 'falling', discharging: 'falling' };

// ----- the gate ------------------------------------------------------------------------------------

export class RobotState {
  private reports: AppReports = {};
  private last: RobotStateStatus['lastCheck'] = null;

  constructor(private readonly ports: RobotStatePorts) {}

  /** The gates the running configuration lists. */
  gates(): RobotGate[] {
    const g = this.ports.config().gates;
    return ROBOT_GATES.filter((name) => g[name] !== undefined);
  }

  /** What the app reports (REST POST /api/v1/robot-state): each field stamped with otad's clock. */
  report(report: AppReport, by: string): { accepted: Array<keyof AppReport>; at: number } {
    const at = this.ports.clock.now();
    const accepted: Array<keyof AppReport> = [];
    for (const [k, v] of Object.entries(report) as Array<[keyof AppReport, AppReport[keyof AppReport]]>) {
      if (v === undefined) continue;
      (this.reports as Record<string, Stamped<unknown>>)[k] = { value: v, at, by };
      accepted.push(k);
    }
    return { accepted, at };
  }

  status(): RobotStateStatus {
    return { gates: this.gates(), reports: structuredClone(this.reports), lastCheck: this.last };
  }

  /**
   * Read every configured gate's sources and decide. `record: false` (a rehearsal) leaves the
   * status's lastCheck as it was: it stays the last evaluation of a real pre-check.
   */
  async check(input: Pick<PreCheckInput, 'product' | 'runId'>, signal: AbortSignal, opts: { record?: boolean } = {}): Promise<{ reasons: PreCheckReason[]; verdicts: GateVerdict[] }> {
    const cfg = this.ports.config();
    const gates = this.gates();
    if (gates.length === 0) return { reasons: [], verdicts: [] };
    const needsUpower = gates.some((g) => (cfg.gates[g]!.sources as readonly string[]).includes('upower'));
    const upower = needsUpower ? await this.ports.upower(cfg).read().then((value) => ({ value }), (error: unknown) => ({ error: describeDbusError(error) })) : null;
    const verdicts: GateVerdict[] = [];
    for (const gate of gates) {
      const g = cfg.gates[gate]!;
      const readings: SourceReading[] = [];
      for (const source of g.sources as readonly RobotSource[]) {
        if (signal.aborted) break;
        readings.push(await this.read(gate, source, upower, g, input, signal));
      }
      const battery = gate === 'battery' ? (g as NonNullable<RobotStateConfig['gates']['battery']>) : null;
      verdicts.push(decideGate(gate, readings, { maxAge: g.maxAge, ...(battery ? { minPercent: battery.minPercent, trend: battery.trend } : {}) }, this.ports.clock.now()));
    }
    if (opts.record !== false) this.last = { at: this.ports.clock.now(), product: input.product, verdicts };
    return { reasons: verdicts.flatMap((v) => v.reasons), verdicts };
  }

  private async read(
    gate: RobotGate,
    source: RobotSource,
    upower: { value: UPowerSnapshot } | { error: string } | null,
    g: { command?: string[] | undefined; timeout: number },
    input: Pick<PreCheckInput, 'product' | 'runId'>,
    signal: AbortSignal,
  ): Promise<SourceReading> {
    switch (source) {
      case 'upower':
        if (upower === null) return { source, missing: 'UPower was not read' };
        if ('error' in upower) return { source, missing: `UPower could not be read (${upower.error})` };
        return upowerReading(gate, upower.value);
      case 'app':
        return appReading(gate, this.reports);
      case 'timedated': {
        const cfg = this.ports.config();
        try {
          const r = await this.ports.timedated(cfg).ntpSynchronized();
          return { source, value: r.value, at: r.readAt, detail: `timedated NTPSynchronized=${r.value}` };
        } catch (error) {
          return { source, missing: `timedated could not be read (${describeDbusError(error)})` };
        }
      }
      case 'command':
        return this.runCommand(gate, g, input, signal);
    }
  }

  private async runCommand(gate: RobotGate, g: { command?: string[] | undefined; timeout: number }, input: Pick<PreCheckInput, 'product' | 'runId'>, signal: AbortSignal): Promise<SourceReading> {
    const source = 'command' as const;
    const command = g.command ?? [];
    const r = await this.ports.commands.run({ name: `robot-state ${gate}`, command, timeoutMs: g.timeout, signal, env: { OTA_PRODUCT: input.product, OTA_RUN_ID: input.runId, OTA_GATE: gate } });
    const at = this.ports.clock.now();
    const shown = command.join(' ');
    const last = r.output.trimEnd().split('\n').at(-1)?.trim().slice(0, 200) ?? '';
    if (r.spawnError !== undefined) return { source, missing: `${shown} could not be started (${r.spawnError})` };
    if (r.timedOut) return { source, missing: `${shown} did not finish within ${fmtAge(g.timeout)}` };
    if (gate === 'battery') {
      if (r.exitCode !== 0) return { source, missing: `${shown} exited with status ${r.exitCode ?? 'signal'}${last ? `: ${last}` : ''}` };
      const m = /(-?\d+(?:\.\d+)?)\s*%?\s*([a-z]+)?/i.exec(r.output);
      const percent = m ? Number(m[1]) : NaN;
      if (!m || !(percent >= 0 && percent <= 100)) return { source, missing: `${shown} printed no battery percentage (0-100)${last ? `: ${last}` : ''}` };
      return { source, value: { percent, trend: (m[2] && TRENDS[m[2].toLowerCase()]) || null }, at, detail: `${shown} printed "${last}"` };
    }
    if (r.exitCode === 0 || r.exitCode === 1) return { source, value: r.exitCode === 0, at, detail: `${shown} exited ${r.exitCode}${last ? `: ${last}` : ''}` };
    return { source, missing: `${shown} exited with status ${r.exitCode ?? 'signal'} (0: yes, 1: no)${last ? `: ${last}` : ''}` };
  }
}

type PreCheckStep = (input: PreCheckInput, signal: AbortSignal) => Promise<PreCheckOutput>;

export interface RobotStateGateOptions {
  /** False: the evaluation is not kept as the status's lastCheck (a rehearsal). */
  record?: boolean;
  /** Told each gate's verdict, the passed ones too (not called when no gate is configured). */
  onVerdicts?: (verdicts: GateVerdict[]) => void;
}

/**
 * The robot-state gates after the product's own pre-check: every reason of both is reported.
 * A real install's pre-check and a rehearsal's go through this same function.
 */
export function withRobotStateGate(preCheck: PreCheckStep, state: RobotState, logger: Logger, opts: RobotStateGateOptions = {}): PreCheckStep {
  return async function robotStateGatedPreCheck(input, signal) {
    const local = await preCheck(input, signal);
    if (state.gates().length === 0) return local;
    const { reasons, verdicts } = await state.check(input, signal, opts.record === false ? { record: false } : {});
    opts.onVerdicts?.(verdicts);
    if (reasons.length === 0) {
      logger.debug('robot-state gates passed', { runId: input.runId, gates: state.gates() });
      return local;
    }
    logger.warn(`robot-state gates did not pass: ${reasons.map((r) => r.code).join(', ')}`, { runId: input.runId, reasons });
    return local.ok ? { ok: false, reasons } : { ...local, reasons: [...local.reasons, ...reasons] };
  };
}
