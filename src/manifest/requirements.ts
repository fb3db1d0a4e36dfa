/**
 * The signed `requirements` of a manifest, checked against the robot before anything is offered or
 * downloaded. Architecture and OS decide whether a release is for this robot at all; a requirement
 * this otad does not know is a requirement it cannot prove met, so the release is passed over (fail
 * closed) rather than installed on a guess. `minFreeBytes` is not a platform fact: it travels with
 * the offer and the disk pre-check demands at least that much free where the release is staged.
 */
import { readFileSync } from 'node:fs';
import type { Manifest } from './schema.js';

/** What this robot is, in the vocabulary publishers write (`ota-repo add --arch/--os`). */
export interface Platform {
  /** Debian architecture name: amd64, arm64, armhf, … */
  arch: string;
  /** `<ID>-<VERSION_ID>` from /etc/os-release, e.g. ubuntu-24.04; null when it cannot be read. */
  os: string | null;
  /** `<ID>` alone (ubuntu), so a release may require a distribution without a version. */
  osId: string | null;
}

/** Requirement keys this otad evaluates. Anything else in a signed manifest makes it pass the release over. */
export const KNOWN_REQUIREMENTS = ['minFreeBytes', 'arch', 'os'] as const;

/** Node's and the kernel's names for the same architectures, mapped to Debian's. */
const ARCH_ALIASES: Record<string, string> = {
  x64: 'amd64',
  x86_64: 'amd64',
  amd64: 'amd64',
  arm64: 'arm64',
  aarch64: 'arm64',
  arm: 'armhf',
  armhf: 'armhf',
  armv7l: 'armhf',
  ia32: 'i386',
  i386: 'i386',
  riscv64: 'riscv64',
  ppc64: 'ppc64el',
  ppc64el: 'ppc64el',
  s390x: 's390x',
};

export function normalizeArch(arch: string): string {
  return ARCH_ALIASES[arch.toLowerCase()] ?? arch.toLowerCase();
}

/** Reads os-release text (systemd's format: KEY=value, values optionally quoted). */
export function parseOsRelease(text: string): { id: string | null; versionId: string | null } {
  const values = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (!m) continue;
    let v = m[2]!;
    if ((v.startsWith('"') && v.endsWith('"')) || (v.startsWith("'") && v.endsWith("'"))) v = v.slice(1, -1);
    values.set(m[1]!, v);
  }
  return { id: values.get('ID')?.toLowerCase() ?? null, versionId: values.get('VERSION_ID') ?? null };
}

/** This machine: process.arch and /etc/os-release (then /usr/lib/os-release, as systemd reads them). */
export function detectPlatform(): Platform {
  let text: string | null = null;
  for (const file of ['/etc/os-release', '/usr/lib/os-release']) {
    try {
      text = readFileSync(file, 'utf8');
      break;
    } catch {
      // Try the next location.
    }
  }
  const { id, versionId } = text === null ? { id: null, versionId: null } : parseOsRelease(text);
  return { arch: normalizeArch(process.arch), os: id && versionId ? `${id}-${versionId}` : id, osId: id };
}

/** Why a release's requirements rule this robot out, or null when they fit. */
export interface UnmetRequirement {
  requirement: string;
  message: string;
}

export function unmetRequirements(requirements: Manifest['requirements'], platform: Platform): UnmetRequirement[] {
  if (requirements === undefined) return [];
  const unmet: UnmetRequirement[] = [];
  const req = requirements as Record<string, unknown>;
  for (const key of Object.keys(req)) {
    if (!(KNOWN_REQUIREMENTS as readonly string[]).includes(key)) {
      unmet.push({ requirement: key, message: `requires ${JSON.stringify(key)}, which this version of otad cannot check; update otad first` });
    }
  }
  if (requirements.arch !== undefined) {
    const wanted = requirements.arch.map(normalizeArch);
    if (!wanted.includes(platform.arch)) unmet.push({ requirement: 'arch', message: `is built for ${requirements.arch.join(', ')}; this robot is ${platform.arch}` });
  }
  if (requirements.os !== undefined) {
    const wanted = requirements.os.map((o) => o.toLowerCase());
    const fits = (platform.os !== null && wanted.includes(platform.os)) || (platform.osId !== null && wanted.includes(platform.osId));
    if (!fits) unmet.push({ requirement: 'os', message: `runs on ${requirements.os.join(', ')}; this robot runs ${platform.os ?? 'an operating system that /etc/os-release does not name'}` });
  }
  return unmet;
}
