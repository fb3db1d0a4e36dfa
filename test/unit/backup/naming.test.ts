import { describe, expect, it } from 'vitest';
import { backupName, formatBackupTime, parseBackupName, parseBackupTime } from '../../../src/backup/naming.js';

const AT = Date.UTC(2026, 2, 4, 5, 6, 7, 890);

describe('backup naming', () => {
  it('names a backup <product>_<version>_<UTC yyyymmddThhmmssZ>_<deviceId>.tar.gz', () => {
    expect(backupName({ product: 'robot-ai', version: '2.0.0-rc.1+build.5', createdAt: AT, deviceId: 'robot-42' })).toBe(
      'robot-ai_2.0.0-rc.1+build.5_20260304T050607Z_robot-42.tar.gz',
    );
  });

  it('parses its own names back, to the second', () => {
    const name = backupName({ product: 'robot-ai', version: '1.2.3', createdAt: AT, deviceId: 'r1' });
    expect(parseBackupName(name)).toEqual({ product: 'robot-ai', version: '1.2.3', createdAt: AT - 890, deviceId: 'r1' });
  });

  it.each(['robot-ai_1.0.0_20260304T050607Z_r1.tar', 'robot-ai_1.0.0_20261304T050607Z_r1.tar.gz', 'x.tar.gz', 'robot-ai_1.0.0_20260304T050607Z_r1.tar.gz.sha256'])(
    'does not take %s for a backup',
    (name) => {
      expect(parseBackupName(name)).toBeNull();
    },
  );

  it.each([
    ['product', { product: 'robot_ai', version: '1', createdAt: AT, deviceId: 'r' }],
    ['product', { product: '../x', version: '1', createdAt: AT, deviceId: 'r' }],
    ['version', { product: 'p', version: '1_0', createdAt: AT, deviceId: 'r' }],
    ['device id', { product: 'p', version: '1', createdAt: AT, deviceId: 'a/b' }],
  ])('refuses a %s that would make the name ambiguous or a path', (_what, parts) => {
    expect(() => backupName(parts)).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });

  it('formats and parses UTC times', () => {
    expect(formatBackupTime(0)).toBe('19700101T000000Z');
    expect(parseBackupTime('20240229T235959Z')).toBe(Date.UTC(2024, 1, 29, 23, 59, 59));
    expect(parseBackupTime('20230229T000000Z')).toBeNull();
  });
});
