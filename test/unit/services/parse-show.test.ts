import { describe, expect, it } from 'vitest';
import { assertUnitName } from '../../../src/services/service-manager.js';
import { parseShowOutput } from '../../../src/services/systemctl.js';

describe('parseShowOutput', () => {
  it('reads an active unit with its restart count', () => {
    expect(parseShowOutput('ActiveState=active\nSubState=running\nNRestarts=3\n')).toEqual({ active: true, state: 'active/running', restarts: 3 });
  });

  it('counts a reloading unit as active and a failed one as not', () => {
    expect(parseShowOutput('ActiveState=reloading\nSubState=reload\n').active).toBe(true);
    expect(parseShowOutput('ActiveState=failed\nSubState=failed\nNRestarts=5\n')).toEqual({ active: false, state: 'failed/failed', restarts: 5 });
  });

  it('reports restarts as unknown when systemd is too old to count them', () => {
    expect(parseShowOutput('ActiveState=active\nSubState=running\n').restarts).toBeNull();
    expect(parseShowOutput('ActiveState=active\nNRestarts=\n').restarts).toBeNull();
  });

  it('treats empty output as an unknown, inactive unit', () => {
    expect(parseShowOutput('')).toEqual({ active: false, state: 'unknown', restarts: null });
  });
});

describe('assertUnitName', () => {
  it('accepts systemd unit names, including templates', () => {
    for (const ok of ['robot-ai.service', 'robot-ai@1.service', 'dev-sda1.mount', 'a\\x2db.service']) expect(() => assertUnitName(ok)).not.toThrow();
  });

  it('rejects option-like, empty and path-like names', () => {
    for (const bad of ['-x', '--all', '', 'a b', 'a/b', 'x;reboot']) expect(() => assertUnitName(bad)).toThrow(/not a valid unit name/);
  });
});
