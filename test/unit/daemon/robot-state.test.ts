import { describe, expect, it } from 'vitest';
import { appReading, decideGate, describeGateVerdict, upowerReading, type SourceReading } from '../../../src/daemon/robot-state.js';
import { verdictsFrom } from '../../../src/daemon/rehearsal.js';
import type { UPowerSnapshot } from '../../../src/adapters/system/upower.js';

const NOW = Date.parse('2026-12-03T10:00:00Z');
const codes = (v: { reasons: Array<{ code: string }> }) => v.reasons.map((r) => r.code);

function snap(over: { online?: boolean; state?: number; percentage?: number; updateTime?: number; present?: boolean } = {}): UPowerSnapshot {
  const dev = (path: string, type: number) => ({ path, type, online: over.online ?? true, powerSupply: true, isPresent: over.present ?? true, percentage: over.percentage ?? 80, state: over.state ?? 1, updateTime: over.updateTime ?? NOW / 1000 - 5 });
  return { readAt: NOW, onBattery: !(over.online ?? true), display: dev('/org/freedesktop/UPower/devices/DisplayDevice', 2), devices: [dev('/org/freedesktop/UPower/devices/line_power_AC', 1), dev('/org/freedesktop/UPower/devices/battery_BAT0', 2)] };
}

describe('robot-state gates (pure decision)', () => {
  it('a good reading from both sources passes', () => {
    const readings: SourceReading[] = [upowerReading('docked', snap()), appReading('docked', { docked: { value: true, at: NOW - 1000, by: 'robot-ai (rest)' } })];
    expect(codes(decideGate('docked', readings, { maxAge: 60_000 }, NOW))).toEqual([]);
  });
  it('UPower on battery while the app says docked is ROBOT_STATE_CONFLICT', () => {
    const readings = [upowerReading('docked', snap({ online: false })), appReading('docked', { docked: { value: true, at: NOW, by: 'robot-ai (rest)' } })];
    const v = decideGate('docked', readings, { maxAge: 60_000 }, NOW);
    expect(codes(v)).toEqual(['ROBOT_STATE_CONFLICT']);
    expect(v.reasons[0]!.message).toContain('UPower says not docked');
  });
  it('a reading older than maxAge is ROBOT_STATE_STALE, a missing one ROBOT_STATE_MISSING', () => {
    expect(codes(decideGate('battery', [upowerReading('battery', snap({ updateTime: NOW / 1000 - 600 }))], { maxAge: 120_000, minPercent: 30 }, NOW))).toEqual(['ROBOT_STATE_STALE']);
    expect(codes(decideGate('stationary', [appReading('stationary', {})], { maxAge: 30_000 }, NOW))).toEqual(['ROBOT_STATE_MISSING']);
    expect(codes(decideGate('charging', [upowerReading('charging', snap({ present: false }))], { maxAge: 30_000 }, NOW))).toEqual(['ROBOT_STATE_MISSING']);
  });
  it('values: low battery, draining, not docked, unsynchronised clock', () => {
    expect(codes(decideGate('battery', [upowerReading('battery', snap({ percentage: 20, state: 2 }))], { maxAge: 120_000, minPercent: 30, trend: 'not-falling' }, NOW))).toEqual(['BATTERY_LOW', 'BATTERY_DRAINING']);
    expect(codes(decideGate('docked', [upowerReading('docked', snap({ online: false }))], { maxAge: 60_000 }, NOW))).toEqual(['NOT_DOCKED']);
    expect(codes(decideGate('clock', [{ source: 'timedated', value: false, at: NOW, detail: 'timedated NTPSynchronized=false' }], { maxAge: 60_000 }, NOW))).toEqual(['CLOCK_NOT_SYNCED']);
  });
});

describe('robot-state gates in a rehearsal report', () => {
  const drained = decideGate('battery', [upowerReading('battery', snap({ percentage: 60, state: 2 }))], { maxAge: 120_000, minPercent: 30, trend: 'not-falling' }, NOW);
  const docked = decideGate('docked', [upowerReading('docked', snap())], { maxAge: 60_000 }, NOW);

  it('a blocking gate is described by its reasons, a passing one by what its readings said and how old they were', () => {
    expect(describeGateVerdict(drained)).toBe('BATTERY_DRAINING: the battery is discharging (UPower) and robotState.gates.battery.trend is not-falling');
    expect(describeGateVerdict(docked)).toBe('passed: UPower says docked (OnBattery=false, line_power_AC Online=true, 0 ms old) (maxAge 60 s)');
  });

  it('each gate gets its own verdict, after the product\'s own conditions and before the ones a rehearsal does not ask', () => {
    const own = [{ code: 'BATTERY_LOW', message: 'battery at 10%, below the minimum of 20% (precheck.minBatteryPercent)' }];
    const v = verdictsFrom(own, [docked, drained]);
    expect(v.map((x) => `${x.condition}:${x.verdict}`)).toEqual([
      'disk space:pass',
      'network:pass',
      'power:block',
      'clock:pass',
      'inhibitors:pass',
      'check commands:pass',
      'robot-state docked:pass',
      'robot-state battery:block',
      'fleet gate:not-asked',
      'maintenance window:not-asked',
    ]);
    // The product's own BATTERY_LOW stays under power; the gate's reason only under its gate.
    expect(v.find((x) => x.condition === 'power')!.detail).toBe(`BATTERY_LOW: ${own[0]!.message}`);
    expect(v.find((x) => x.condition === 'robot-state battery')!.detail).toMatch(/^BATTERY_DRAINING: /);
  });
});
