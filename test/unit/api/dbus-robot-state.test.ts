import dbus from 'dbus-next';
import { describe, expect, it } from 'vitest';
import { isOtaError } from '../../../src/core/errors.js';
import { robotStateBody } from '../../../src/api/dbus-v2.js';

const V = dbus.Variant;

function refusal(fn: () => unknown): { code: string; message: string } {
  try {
    fn();
  } catch (error) {
    if (isOtaError(error)) return { code: error.code, message: error.message };
    throw error;
  }
  throw new Error('expected a refusal');
}

describe('ReportRobotState a{sv} as the REST body', () => {
  it('takes each known key with its own D-Bus type, an integer percentage as a number', () => {
    expect(robotStateBody({ docked: new V('b', true), batteryPercent: new V('u', 70), batteryTrend: new V('s', 'rising') })).toEqual({ docked: true, batteryPercent: 70, batteryTrend: 'rising' });
    expect(robotStateBody({ batteryPercent: new V('d', 55.5) })).toEqual({ batteryPercent: 55.5 });
  });

  it('refuses a known key of the wrong type with API_INVALID_REQUEST, naming every such key', () => {
    expect(refusal(() => robotStateBody({ docked: new V('s', 'yes'), batteryPercent: new V('t', 5n) }))).toEqual({
      code: 'API_INVALID_REQUEST',
      message: 'robot state: docked must be a variant of type b (boolean), not s; batteryPercent must be a variant of type d (double; an integer type is taken too), not t',
    });
  });

  it('passes unknown keys on, for the edge schema to refuse as REST does', () => {
    expect(robotStateBody({ speed: new V('d', 1.5) })).toEqual({ speed: 1.5 });
  });
});
