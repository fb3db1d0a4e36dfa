import { describe, expect, it } from 'vitest';
import { hookCommand, hooksRunAsTransientUnits, systemdRunCommand, type HookCommandInput } from '../../../src/hooks/hook-isolation.js';

const input: HookCommandInput = {
  program: '/opt/robot-ai/releases/2.0.0/.ota/hooks/post-apply',
  product: 'robot-ai',
  hook: 'post-apply',
  cwd: '/opt/robot-ai/releases/2.0.0',
  env: { PATH: '/usr/bin:/bin', OTA_PRODUCT: 'robot-ai', OTA_FROM_VERSION: '', UNSET: undefined },
  timeoutMs: 120_500,
  killGraceMs: 2000,
  instance: 'ab12',
};

describe('where a release hook runs', () => {
  it('asks systemd for a transient, collected unit that waits, pipes its output and carries its own deadline', () => {
    expect(systemdRunCommand(input)).toEqual([
      'systemd-run',
      '--wait',
      '--collect',
      '--pipe',
      '--quiet',
      '--unit=otad-hook-robot-ai-post-apply-ab12',
      '--description=otad post-apply hook of robot-ai',
      '--working-directory=/opt/robot-ai/releases/2.0.0',
      '--property=RuntimeMaxSec=121s',
      '--property=TimeoutStopSec=2s',
      '--property=KillMode=control-group',
      '--setenv=PATH=/usr/bin:/bin',
      '--setenv=OTA_PRODUCT=robot-ai',
      '--setenv=OTA_FROM_VERSION=',
      '--',
      '/opt/robot-ai/releases/2.0.0/.ota/hooks/post-apply',
    ]);
  });

  it('keeps unit names to the characters systemd allows', () => {
    expect(systemdRunCommand({ ...input, product: 'robot ai/x', instance: 'a@b' })).toContain('--unit=otad-hook-robot_ai_x-post-apply-a_b');
  });

  it('uses transient units only when systemd is PID 1 and otad is one of its services', () => {
    const booted = (p: string) => p === '/run/systemd/system';
    expect(hooksRunAsTransientUnits({ INVOCATION_ID: '0f3c' }, booted)).toBe(true);
    expect(hooksRunAsTransientUnits({}, booted)).toBe(false);
    expect(hooksRunAsTransientUnits({ INVOCATION_ID: '0f3c' }, () => false)).toBe(false);
  });

  it('falls back to running the hook itself, with its environment, outside systemd', () => {
    expect(hookCommand(input, false)).toEqual({ command: [input.program], env: input.env });
    const viaSystemd = hookCommand(input, true);
    expect(viaSystemd.command[0]).toBe('systemd-run');
    expect(viaSystemd.env).toEqual({ PATH: '/usr/bin:/bin', LANG: 'C.UTF-8' });
  });
});
