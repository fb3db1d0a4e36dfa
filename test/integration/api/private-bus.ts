/**
 * A private dbus-daemon for tests, started as a child process on a socket in a temp folder.
 * `config` 'session' uses the stock session configuration; 'system-policy' builds a system-like
 * configuration (deny by default) that includes deploy/dbus/io.otad.Daemon1.conf.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const DBUS_DAEMON = '/usr/bin/dbus-daemon';
export const hasDbusDaemon = existsSync(DBUS_DAEMON);
export const POLICY_FILE = resolve(import.meta.dirname, '../../../deploy/dbus/io.otad.Daemon1.conf');

export function hasTool(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`]).status === 0;
}

export interface PrivateBus {
  address: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

export async function startPrivateBus(dir: string, config: 'session' | 'system-policy' = 'session'): Promise<PrivateBus> {
  const socket = join(dir, 'bus');
  const args = ['--nofork', '--print-address'];
  if (config === 'session') {
    args.push('--session', `--address=unix:path=${socket}`);
  } else {
    const file = join(dir, 'bus.conf');
    writeFileSync(
      file,
      `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=${socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>
  <include>${POLICY_FILE}</include>
</busconfig>
`,
    );
    args.push(`--config-file=${file}`);
  }
  const child = spawn(DBUS_DAEMON, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  const address = await new Promise<string>((res, rej) => {
    let out = '';
    const timer = setTimeout(() => rej(new Error(`dbus-daemon did not print its address: ${stderr}`)), 10_000);
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      const line = out.split('\n')[0];
      if (out.includes('\n') && line) {
        clearTimeout(timer);
        res(line.trim());
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      rej(new Error(`dbus-daemon exited with ${code}: ${stderr}`));
    });
  });
  return {
    address,
    child,
    stop: () =>
      new Promise<void>((res) => {
        if (child.exitCode !== null) return res();
        child.once('exit', () => res());
        child.kill('SIGTERM');
      }),
  };
}
