/**
 * Which version a new release may take: pure rules over what the repository already signed. A
 * release on a channel must be greater than the latest on that channel (robots never offer an
 * older one as an update), may not reuse a version the product already has on any channel (the
 * target names are per product and version), and must agree with the product's own version file
 * (checked on the package by src/repo/release-check.ts).
 */
import semver from 'semver';

export interface PublishedRelease {
  product: string;
  version: string;
  channel: string;
}

export interface VersionProposals {
  /** The greatest version on the channel, or null when the channel has none yet. */
  latest: string | null;
  patch: string | null;
  minor: string | null;
  major: string | null;
}

export function latestOnChannel(releases: readonly PublishedRelease[], product: string, channel: string): string | null {
  let latest: string | null = null;
  for (const r of releases) {
    if (r.product !== product || r.channel !== channel || semver.valid(r.version) === null) continue;
    if (latest === null || semver.gt(r.version, latest)) latest = r.version;
  }
  return latest;
}

export function proposeVersions(latest: string | null): VersionProposals {
  if (latest === null) return { latest: null, patch: null, minor: null, major: null };
  return { latest, patch: semver.inc(latest, 'patch'), minor: semver.inc(latest, 'minor'), major: semver.inc(latest, 'major') };
}

/** Why `version` cannot be published on `channel`, or null when it can. */
export function versionProblem(version: string, releases: readonly PublishedRelease[], product: string, channel: string): string | null {
  if (semver.valid(version) !== version) return `${JSON.stringify(version)} is not a semantic version: expected MAJOR.MINOR.PATCH such as 1.4.2`;
  const taken = releases.find((r) => r.product === product && r.version === version);
  if (taken !== undefined) return `${product} ${version} is already published (channel ${taken.channel}): choose a new version`;
  const latest = latestOnChannel(releases, product, channel);
  if (latest !== null && !semver.gt(version, latest)) return `must be greater than ${latest}, the latest ${product} release on channel ${channel}`;
  return null;
}
