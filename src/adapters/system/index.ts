/**
 * The real system adapters the pre-check needs, built in one call for the step provider.
 * Tests use the hand-written fakes in fakes.ts instead.
 */
import { createCommandRunner, type CommandRunner } from './check-commands.js';
import { createTimedatectlAdapter, type ClockSanityPort } from './clock-sanity.js';
import { createDiskAdapter, type DiskPort } from './disk.js';
import { createInhibitFileAdapter, type InhibitFilePort } from './inhibit-file.js';
import { createPowerAdapter, type PowerPort } from './power.js';

export interface SystemAdapters {
  disk: DiskPort;
  power: PowerPort;
  clockSanity: ClockSanityPort;
  inhibitFile: InhibitFilePort;
  commands: CommandRunner;
}

export function createSystemAdapters(): SystemAdapters {
  return {
    disk: createDiskAdapter(),
    power: createPowerAdapter(),
    clockSanity: createTimedatectlAdapter(),
    inhibitFile: createInhibitFileAdapter(),
    commands: createCommandRunner(),
  };
}

export type { CommandRequest, CommandResult, CommandRunner } from './check-commands.js';
export type { ClockSanityPort } from './clock-sanity.js';
export type { DiskPort, FilesystemInfo } from './disk.js';
export type { InhibitFileContent, InhibitFilePort, ParsedInhibit } from './inhibit-file.js';
export type { BatteryReading, PowerPort } from './power.js';
