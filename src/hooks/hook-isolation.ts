/**
 * Where a release hook runs. otad's unit is sandboxed (deploy/systemd/otad.service: read-only
 * system, a small capability set, a system call filter); a hook is the product's own code and may
 * need what otad may not (write /etc/robot-ai, restart a helper, load a udev rule). Under systemd
 * the hook is therefore started by PID 1 as a transient service (`systemd-run --wait --collect
 * --pipe`), outside otad's sandbox and cgroup, with its own deadline; its output still comes back
 * through the pipes and its exit status through `--wait`. Elsewhere (no systemd, tests, the demo)
 * it is a plain child process, as before.
 */
import { existsSync } from 'node:fs';

export interface HookCommandInput {
  /** The hook's executable (already checked to lie inside the release). */
  program: string;
  product: string;
  hook: string;
  cwd: string;
  env: Record<string, string | undefined>;
  timeoutMs: number;
  killGraceMs: number;
  /** Makes the unit name unique among hooks of the same product (the run id, or a time). */
  instance: string;
}

export interface HookCommand {
  command: string[];
  /** The environment of the process otad starts (for systemd-run, not the hook's own). */
  env: NodeJS.ProcessEnv;
}

/**
 * Transient units are wanted only when otad itself runs as a systemd service: systemd is PID 1
 * (sd_booted(3): /run/systemd/system exists) and this process is a unit's (INVOCATION_ID, which
 * systemd sets for every service). A shell, a test run or a container without systemd keeps
 * plain child processes, which also need no D-Bus and no privilege to create units.
 */
export function hooksRunAsTransientUnits(env: NodeJS.ProcessEnv = process.env, exists: (p: string) => boolean = existsSync): boolean {
  return exists('/run/systemd/system') && typeof env['INVOCATION_ID'] === 'string' && env['INVOCATION_ID'] !== '';
}

/** Unit names allow [A-Za-z0-9:_.\-]; everything else becomes '_'. */
function unitPart(s: string): string {
  return s.replace(/[^A-Za-z0-9:_.-]/g, '_');
}

/** The command line that asks systemd to run the hook as `otad-hook-<product>-<hook>-<instance>.service`. */
export function systemdRunCommand(input: HookCommandInput, systemdRun = 'systemd-run'): string[] {
  const seconds = (ms: number) => `${Math.max(1, Math.ceil(ms / 1000))}s`;
  const setenv = Object.entries(input.env)
    .filter((e): e is [string, string] => e[1] !== undefined)
    .map(([k, v]) => `--setenv=${k}=${v}`);
  return [
    systemdRun,
    '--wait',
    '--collect',
    '--pipe',
    '--quiet',
    `--unit=otad-hook-${unitPart(input.product)}-${unitPart(input.hook)}-${unitPart(input.instance)}`,
    `--description=otad ${input.hook} hook of ${input.product}`,
    `--working-directory=${input.cwd}`,
    // The hook's own limits, enforced by systemd even if otad dies meanwhile: its deadline, the
    // grace between SIGTERM and SIGKILL, and every process it started goes with it.
    `--property=RuntimeMaxSec=${seconds(input.timeoutMs)}`,
    `--property=TimeoutStopSec=${seconds(input.killGraceMs)}`,
    '--property=KillMode=control-group',
    ...setenv,
    '--',
    input.program,
  ];
}

/** How to start the hook: through systemd-run when otad is a systemd service, else directly. */
export function hookCommand(input: HookCommandInput, transient: boolean): HookCommand {
  if (!transient) return { command: [input.program], env: input.env };
  return {
    command: systemdRunCommand(input),
    // systemd-run itself needs only a PATH to be found; the hook gets its environment via --setenv.
    env: { PATH: input.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' },
  };
}
