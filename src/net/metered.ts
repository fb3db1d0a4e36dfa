/**
 * Is the robot's link metered (a mobile data plan, a tethered phone)? Download ahead with the
 * `unmetered` policy asks this before it downloads during the day.
 *
 * otad has no source for this reading yet: NetworkManager's `Metered` property (GUESS_YES, YES, …)
 * is not read here. Until it is, the answer is always `unknown`, and the `unmetered` policy treats
 * unknown as "not allowed": a release is never downloaded ahead over a link nobody knows to be free.
 * The reason says so, so status and the log tell the operator why nothing was downloaded.
 */
export type MeteredReading = { metered: 'yes' | 'no' | 'unknown'; source: string; reason: string };

export type MeteredSource = () => Promise<MeteredReading>;

export const meteredLink: MeteredSource = async () => ({
  metered: 'unknown',
  source: 'none',
  reason: 'otad has no metered-link reading on this robot (NetworkManager is not asked yet)',
});
