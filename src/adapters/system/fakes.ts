/**
 * Hand-written stand-ins for the system adapters: tests and the demo set the measurements by hand.
 * Each implements the same port as the real adapter beside it.
 */
import type { CommandRequest, CommandResult, CommandRunner } from './check-commands.js';
import type { ClockSanityPort } from './clock-sanity.js';
import type { DiskPort, FilesystemInfo } from './disk.js';
import type { InhibitFileContent, InhibitFilePort } from './inhibit-file.js';
import type { BatteryReading, PowerPort } from './power.js';

export interface FakeMount {
  /** Mount point: every path under it belongs to this filesystem (the longest match wins). */
  at: string;
  freeBytes: number;
  totalBytes?: number;
}

export class FakeDisk implements DiskPort {
  mounts: FakeMount[];
  /** Bytes of the tree at a path (treeBytes answers 0 for anything not listed). */
  trees = new Map<string, number>();
  failure: Error | null = null;

  constructor(mounts: FakeMount[] = [{ at: '/', freeBytes: 100 * 1024 ** 3 }]) {
    this.mounts = mounts;
  }

  mount(at: string): FakeMount {
    const found = [...this.mounts].sort((a, b) => b.at.length - a.at.length).find((m) => within(at, m.at));
    if (found === undefined) throw new Error(`FakeDisk: no mount holds ${at}`);
    return found;
  }

  async filesystem(path: string): Promise<FilesystemInfo> {
    if (this.failure) throw this.failure;
    const m = this.mount(path);
    return { id: m.at, measuredPath: path, freeBytes: m.freeBytes, totalBytes: m.totalBytes ?? m.freeBytes * 2 };
  }

  async treeBytes(path: string): Promise<number> {
    if (this.failure) throw this.failure;
    return this.trees.get(path) ?? 0;
  }
}

function within(path: string, mountPoint: string): boolean {
  return mountPoint === '/' || path === mountPoint || path.startsWith(`${mountPoint}/`);
}

export class FakePower implements PowerPort {
  reading: BatteryReading;
  failure: Error | null = null;

  constructor(reading: Partial<BatteryReading> = {}) {
    this.reading = { hasBattery: true, percent: 80, isCharging: true, acConnected: true, ...reading };
  }

  /** A machine on mains power: no battery at all. */
  static mains(): FakePower {
    return new FakePower({ hasBattery: false, percent: 0, isCharging: false, acConnected: true });
  }

  async battery(): Promise<BatteryReading> {
    if (this.failure) throw this.failure;
    return { ...this.reading };
  }
}

export class FakeClockSanity implements ClockSanityPort {
  constructor(public synchronized: boolean | null = true) {}

  async ntpSynchronized(): Promise<boolean | null> {
    return this.synchronized;
  }
}

export class FakeInhibitFile implements InhibitFilePort {
  readonly files = new Map<string, InhibitFileContent>();

  write(path: string, content: string | object, mtimeMs: number): void {
    this.files.set(path, { content: typeof content === 'string' ? content : JSON.stringify(content), mtimeMs });
  }

  async read(path: string): Promise<InhibitFileContent | null> {
    return this.files.get(path) ?? null;
  }
}

export class FakeCommandRunner implements CommandRunner {
  readonly calls: CommandRequest[] = [];
  /** Result per command name; a command not listed exits 0 with no output. */
  readonly results = new Map<string, CommandResult>();

  async run(request: CommandRequest): Promise<CommandResult> {
    this.calls.push(request);
    return this.results.get(request.name) ?? { exitCode: 0, timedOut: false, output: '' };
  }
}
