/**
 * The package tests (test/integration/package/deb-*.test.ts) need the built .deb files, root and
 * system tools. On a developer machine a missing one skips the test with a line saying what is
 * missing. In CI (`CI=true`, which .ci/run sets) nothing may be missing: .ci/run installs the
 * tools as root and builds both packages before the suite, so a missing prerequisite there is a
 * broken CI, and the gate turns it into a failing test that names it instead of a skip.
 */
import { describe, it } from 'vitest';

/** CI=true (or 1), as .ci/run and the common CI services set it. */
export const IN_CI = process.env.CI === 'true' || process.env.CI === '1';

/**
 * `reason` null: the test can run (returns false). Otherwise outside CI: warns and returns true
 * (skip); in CI: registers a failing test `title` naming the reason and returns true.
 */
export function missingPrerequisite(title: string, reason: string | null): boolean {
  if (reason === null) return false;
  if (IN_CI) {
    describe(title, () => {
      it('has what it needs in CI', () => {
        throw new Error(`${title}: ${reason}. CI=true: .ci/run installs the tools and builds both packages (npm run package:deb) before the suite, so this is a failure, not a skip`);
      });
    });
  } else {
    console.warn(`${title} skipped: ${reason}`);
  }
  return true;
}
