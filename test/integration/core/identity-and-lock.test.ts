import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { firstPhysicalMac, loadDeviceIdentity, type DeviceIdSources } from '../../../src/core/device-id.js';
import { acquireInstanceLock, lockHolder } from '../../../src/daemon/instance-lock.js';

const dirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'otad-core-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const sources = (over: Partial<DeviceIdSources> = {}): DeviceIdSources => ({
  interfaces: async () => [
    { iface: 'lo', mac: '00:00:00:00:00:00', internal: true, virtual: false },
    { iface: 'docker0', mac: '02:42:ac:11:00:01', internal: false, virtual: true },
    { iface: 'wlan0', mac: 'B8:27:EB:00:00:02', internal: false, virtual: false },
    { iface: 'eth0', mac: 'b8:27:eb:00:00:01', internal: false, virtual: false },
  ],
  machineId: () => '0123456789abcdef0123456789abcdef',
  uuid: () => '11111111-2222-3333-4444-555555555555',
  ...over,
});

describe('device identity', () => {
  it('comes from the first physical interface, ignoring loopback and virtual ones', () => {
    expect(firstPhysicalMac([{ iface: 'veth1', mac: '02:00:00:00:00:09', internal: false, virtual: false }])).toBeNull();
  });

  it('is stored 0600 and stays the same across restarts even when the hardware changes', async () => {
    const file = join(tmp(), 'device-id');
    const first = await loadDeviceIdentity(file, sources());
    expect(first).toEqual({ deviceId: 'mac-b827eb000001', source: 'mac' });
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const again = await loadDeviceIdentity(file, sources({ interfaces: async () => [] }));
    expect(again).toEqual({ deviceId: 'mac-b827eb000001', source: 'stored' });
  });

  it('falls back to /etc/machine-id, then to a generated UUID', async () => {
    const noMac = { interfaces: async () => [] };
    expect((await loadDeviceIdentity(join(tmp(), 'id'), sources(noMac))).source).toBe('machine-id');
    const generated = await loadDeviceIdentity(join(tmp(), 'id'), sources({ ...noMac, machineId: () => null }));
    expect(generated).toEqual({ deviceId: 'gen-11111111-2222-3333-4444-555555555555', source: 'generated' });
  });
});

describe('the single-instance lock', () => {
  it('refuses a second holder while the first is alive, and frees on release', () => {
    const path = join(tmp(), 'otad.lock');
    const lock = acquireInstanceLock(path);
    expect(readFileSync(path, 'utf8').split('\n')[0]).toBe(String(process.pid));
    lock.release();
    const again = acquireInstanceLock(path);
    again.release();
  });

  it('takes over a lock left by a process that is gone', async () => {
    const path = join(tmp(), 'otad.lock');
    const child = spawn(process.execPath, ['-e', '0']);
    const pid = child.pid as number;
    await new Promise((r) => child.on('exit', r));
    writeFileSync(path, `${pid}\n`);
    const lock = acquireInstanceLock(path);
    expect(readFileSync(path, 'utf8').split('\n')[0]).toBe(String(process.pid));
    lock.release();
  });

  it('takes over a lock written in an earlier boot, even when its pid now belongs to a process named otad', () => {
    // After a power cut the same pid is handed out again early in the boot (found by npm run powercut).
    const path = join(tmp(), 'otad.lock');
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)', '/opt/otad/app/something.js'], { stdio: 'ignore' });
    try {
      writeFileSync(path, `${child.pid}\nboot 00000000-0000-0000-0000-000000000000\n`);
      expect(lockHolder(path)).toBeNull();
      const lock = acquireInstanceLock(path);
      expect(readFileSync(path, 'utf8')).toBe(`${process.pid}\nboot ${readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()}\n`);
      lock.release();
      // The same pid with this boot's id is a live holder.
      writeFileSync(path, `${child.pid}\nboot ${readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()}\n`);
      expect(lockHolder(path)).toBe(child.pid);
      expect(() => acquireInstanceLock(path)).toThrow(expect.objectContaining({ code: 'ALREADY_RUNNING' }));
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('refuses with ALREADY_RUNNING when a live otad holds it', async () => {
    const path = join(tmp(), 'otad.lock');
    // A process whose command line names otad, as the real daemon's does.
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)', 'otad'], { stdio: 'ignore' });
    try {
      writeFileSync(path, `${child.pid}\n`);
      expect(() => acquireInstanceLock(path)).toThrow(expect.objectContaining({ code: 'ALREADY_RUNNING' }));
    } finally {
      child.kill('SIGKILL');
    }
  });
});
