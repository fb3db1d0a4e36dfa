/**
 * What a publisher checks before signing a release: the package passes the same scan the robot runs
 * before it extracts anything (so a release robots would refuse is never signed), and the version
 * file the product type reads says the version being published (so `installed` on the robot and
 * the signed version never disagree).
 */
import { OtaError } from '../core/errors.js';
import { scanPackage, type PackageScan } from '../package/scan.js';
import { parseVersionText } from '../products/registry.js';

export interface ReleaseCheck {
  /** The product's version file inside the release (`VERSION`), or null to skip the version check. */
  versionFile: string | null;
}

export interface ReleaseCheckResult {
  scan: PackageScan;
  /** What the version file says, or null when not checked. */
  fileVersion: string | null;
}

export async function checkReleasePackage(file: string, version: string, check: ReleaseCheck): Promise<ReleaseCheckResult> {
  const wanted = check.versionFile === null ? null : normaliseEntryPath(check.versionFile);
  // Default limits: the robot's stage step scans with the same defaults.
  const scan = await scanPackage(file, undefined, undefined, wanted === null ? {} : { capture: [wanted] });
  if (wanted === null) return { scan, fileVersion: null };
  const bytes = scan.captured[wanted];
  if (bytes === undefined) {
    throw new OtaError('RELEASE_VERSION_MISMATCH', `the package has no version file ${wanted} (where the product type reads its version); add it, or pass --no-version-file`, {
      details: { versionFile: wanted, version },
    });
  }
  const fileVersion = parseVersionText(bytes.toString('utf8'));
  if (fileVersion !== version) {
    throw new OtaError('RELEASE_VERSION_MISMATCH', `the package's version file ${wanted} says ${fileVersion ?? JSON.stringify(bytes.toString('utf8').split('\n')[0])}, not --version ${version}`, {
      details: { versionFile: wanted, version, fileVersion },
    });
  }
  return { scan, fileVersion };
}

function normaliseEntryPath(p: string): string {
  return p.replace(/^(\.\/)+/, '').replace(/\/+$/, '');
}
