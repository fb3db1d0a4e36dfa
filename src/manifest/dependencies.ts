/**
 * A release's `dependencies` (manifest schema 1.1): the versions of its siblings, the other
 * products on the same robots, that it needs, as semver ranges. The studio checks them against the
 * versions published in the repository (an unknown sibling, a range no published version
 * satisfies); otad checks them against the versions installed on the robot and reports each.
 */
import semver from 'semver';

export interface DependencyVerdict {
  product: string;
  range: string;
  /** The versions the range was checked against (published, or the one installed). */
  candidates: string[];
  /** The newest candidate that satisfies the range, or null. */
  satisfiedBy: string | null;
  problem: 'unknown-sibling' | 'unsatisfiable' | 'invalid-range' | null;
  message: string;
}

/**
 * Each dependency against the versions known of each sibling (`versions`: product → versions).
 * `what` names the versions in the messages: "published" in the studio, "installed" on a robot.
 */
export function evaluateDependencies(dependencies: Readonly<Record<string, string>>, versions: ReadonlyMap<string, readonly string[]>, what: 'published' | 'installed'): DependencyVerdict[] {
  return Object.entries(dependencies).map(([product, range]) => {
    const known = versions.get(product);
    if (semver.validRange(range) === null) {
      return { product, range, candidates: [], satisfiedBy: null, problem: 'invalid-range', message: `${JSON.stringify(range)} is not a semver range (e.g. ^1.4.0 or >=1.2.0 <2.0.0)` };
    }
    if (known === undefined) {
      return {
        product,
        range,
        candidates: [],
        satisfiedBy: null,
        problem: 'unknown-sibling',
        message: what === 'published' ? `no product ${product} is published in this repository` : `${product} is not installed on this robot`,
      };
    }
    const candidates = [...known].filter((v) => semver.valid(v) !== null).sort(semver.rcompare);
    const satisfiedBy = semver.maxSatisfying(candidates, range, { includePrerelease: false });
    return {
      product,
      range,
      candidates,
      satisfiedBy,
      problem: satisfiedBy === null ? 'unsatisfiable' : null,
      message:
        satisfiedBy !== null
          ? `${product} ${range}: ${what} ${satisfiedBy} satisfies it`
          : `no ${what} version of ${product} satisfies ${range} (${what}: ${candidates.length > 0 ? candidates.slice(0, 6).join(', ') + (candidates.length > 6 ? ', …' : '') : 'none'})`,
    };
  });
}
