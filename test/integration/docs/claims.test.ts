/**
 * The claims the README and the docs make about behaviour, each with the tests that back it. A
 * claim here is a sentence an operator would rely on; this file is the list that was checked. For
 * each one: the sentence is still in the document (so a reworded claim is checked again), and
 * every backing test still exists under the title given (so a renamed or deleted test is noticed).
 * A claim no test backs does not belong in the docs: it is removed there, not listed here.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../support/otad-process.js';

interface Claim {
  doc: string;
  /** A verbatim fragment of the claim (whitespace-normalised when compared). */
  says: string;
  /** Test files (relative to test/) and a fragment of the title of the test that proves it. */
  backedBy: Array<[file: string, title: string]>;
}

const CLAIMS: Claim[] = [
  {
    doc: 'README.md',
    says: 'a power cut at any instant leaves the product on one complete release, and after a restart the daemon finishes the run or rolls it back by itself',
    backedBy: [
      ['integration/crash/crash-consistency.test.ts', 'always leaves one complete release on disk and settles by itself'],
      ['integration/release/apply-recovery.test.ts', 'the link is on one complete release and recovery finishes on the new one'],
    ],
  },
  {
    doc: 'README.md',
    says: 'every transition is written to SQLite before the next step starts',
    backedBy: [['integration/daemon/daemon.test.ts', 'persists every transition of a run with its event, in order, with no gap']],
  },
  {
    doc: 'README.md',
    says: 'A written recovery table decides, per state, what happens after a crash',
    backedBy: [
      ['unit/daemon/recovery-policy.test.ts', 'has a row for every state of the machine, each with its reason'],
      ['integration/daemon/kill-recovery.test.ts', 'continues a run killed in every state from checking to commit, and commits it'],
    ],
  },
  {
    doc: 'README.md',
    says: 'waits for exactly one of two choices: `UPDATE_NOW` or `SCHEDULE_3AM`',
    backedBy: [['integration/daemon/daemon.test.ts', 'refuses an event that is not one of its events, listing the two choices']],
  },
  {
    doc: 'README.md',
    says: '(3 AM local time, daylight-saving safe, spread across the fleet)',
    backedBy: [
      ['unit/schedule/slot.test.ts', 'Europe/Berlin 02:30 on the spring day is the moment clocks jump'],
      ['unit/schedule/spread.test.ts', 'is deterministic per device and key'],
      ['integration/daemon/scheduling.test.ts', 'checks daily at 03:00 Berlin time plus this device’s delay'],
    ],
  },
  {
    doc: 'README.md',
    says: 'Nothing waits forever: a timeout applies the configured default.',
    backedBy: [['integration/daemon/scheduling.test.ts', 'applies the default choice when the choice timeout passes during a restart']],
  },
  {
    doc: 'README.md',
    says: 'a download that is verified with TUF signatures, length and SHA-256, and resumes after an interruption',
    backedBy: [
      ['integration/trust/attacks.test.ts', 'timestamp signed by a key the root does not know → TRUST_SIGNATURE, audited'],
      ['integration/net/download.test.ts', 'resumes after a connection reset mid-body, and the server sent each byte only once'],
      ['integration/trust/nginx.test.ts', 'answers a resumed download with 206 and only the missing bytes'],
    ],
  },
  {
    doc: 'README.md',
    says: 'a package scanned for hostile entries before extraction',
    backedBy: [
      ['integration/package/scan.test.ts', 'writes nothing while scanning'],
      ['integration/security/hostile-packages.test.ts', 'not retryable, audited, nothing installed or left behind'],
    ],
  },
  {
    doc: 'README.md',
    says: 'complete releases side by side switched by one atomic `rename(2)` of a symlink',
    backedBy: [['integration/release/release-store.test.ts', 'imports a staged tree by rename and switches the link to it']],
  },
  {
    doc: 'README.md',
    says: 'a probation window of health checks, and an automatic rollback',
    backedBy: [
      ['integration/steps/validate.test.ts', 'fails with HEALTH_CHECK_FAILED when the new release answers its health endpoint with an error'],
      ['integration/demo/demo.test.ts', 'updates robot-ai, rolls a broken release back by itself, and exits 0'],
    ],
  },
  {
    doc: 'README.md',
    says: 'REST and a Socket.IO stream on localhost, a D-Bus service',
    backedBy: [
      ['integration/api/real-process.test.ts', 'listens on 127.0.0.1 and records its address in <stateDir>/api.json'],
      ['integration/api/socket.test.ts', 'streams transitions, progress, notifications and log lines in the versioned envelope'],
      ['integration/api/dbus.test.ts', 'introspects as io.otad.Daemon1 with the documented methods and signals'],
    ],
  },
  {
    doc: 'README.md',
    says: 'testers export a run and replay it offline',
    backedBy: [['integration/replay/replay.test.ts', 'reproduces the recorded state sequence of a committed run']],
  },
  {
    doc: 'README.md',
    says: "Each robot reports its versions to the server's fleet view",
    backedBy: [['integration/daemon/checkin.test.ts', 'reports the installed version and state after a run, signed, and the server records the device']],
  },
  {
    doc: 'README.md',
    says: 'rolls a release out in batches that open after a soak and halt themselves when failures pass a threshold',
    backedBy: [
      ['integration/server/rollouts.test.ts', 'percentage batches take the signed rollout bucket; batch 2 opens only after the soak with enough reports'],
      ['integration/server/rollouts.test.ts', 'failures past the threshold halt the rollout by themselves with the reason, audited'],
      ['integration/fleet/rollout-fleet.test.ts', 'batch 1 commits, batch 2 opens, failures there halt it, robots outside stop starting, and resume lets the rest through'],
    ],
  },
  {
    doc: 'README.md',
    says: 'lets at most k robots of a site update at once',
    backedBy: [
      ['integration/server/rollouts.test.ts', 'two servers never let more than k = 2 of 50 robots of one site hold a lease at once, over many cycles'],
      ['integration/fleet/rollout-fleet.test.ts', 'a real otad killed with SIGKILL while holding a lease frees its slot when the TTL passes, not before'],
    ],
  },
  {
    doc: 'README.md',
    says: 'or any static web host (nginx, a CDN, an object store) serves the same folder',
    backedBy: [['integration/trust/nginx.test.ts', 'refreshes, detects, downloads, verifies and stages exactly what ota-server gives']],
  },
  {
    doc: 'README.md',
    says: '`CANCEL` is accepted up to and including staging; from apply on, only a rollback undoes a run.',
    backedBy: [
      ['unit/machine/update-machine.test.ts', 'ends the run as cancelled without touching the robot and drops the offer'],
      ['unit/machine/update-machine.test.ts', 'from apply on only a rollback undoes a run'],
    ],
  },
  {
    doc: 'README.md',
    says: 'Unknown keys are errors that name the closest known key',
    backedBy: [['unit/config/unknown-keys.test.ts', 'refuses a misspelled product key, naming its path and the closest known key']],
  },
  {
    doc: 'README.md',
    says: 'lists every problem with its code',
    backedBy: [['integration/daemon/check-config.test.ts', 'lists every problem of a configuration with several at once, each with its code, and exits non-zero']],
  },
  {
    doc: 'README.md',
    says: '`SIGHUP` reloads the file and logs what changed, what the next run uses and what waits for a restart',
    backedBy: [
      ['integration/daemon/daemon.test.ts', 'reloads its configuration on SIGHUP, reporting what changed or why a new file was refused'],
      ['integration/daemon/reload-e2e.test.ts', 'sends the next run to the new server while the run in flight finishes on the old one'],
      ['integration/daemon/reload.test.ts', 'keeps the running paths and products after a reload that needs a restart, and says so'],
    ],
  },
  {
    doc: 'docs/configuration.md',
    says: 'A run in flight (from its check until it is back in `idle` or `failed`) keeps the steps and the policy it started with to its end',
    backedBy: [
      ['integration/daemon/reload.test.ts', 'gives the next run steps and policy built from the new configuration, and leaves the run in flight as it started'],
      ['integration/daemon/reload-e2e.test.ts', 'sends the next run to the new server while the run in flight finishes on the old one'],
    ],
  },
  {
    doc: 'docs/configuration.md',
    says: 'A key that needs a restart is not applied in part',
    backedBy: [
      ['unit/config/reload.test.ts', 'keeps the running value of every key that needs a restart, so none is applied halfway'],
      ['integration/daemon/reload.test.ts', 'keeps the running paths and products after a reload that needs a restart, and says so'],
    ],
  },
  {
    doc: 'docs/manifest.md',
    says: 'A robot that does not fit `arch` or `os` passes the release over before downloading anything',
    backedBy: [
      ['integration/trust/requirements.test.ts', 'another architecture, another OS and an unknown requirement are passed over, and nothing of theirs is downloaded'],
      ['integration/trust/requirements-e2e.test.ts', 'is passed over: the newest release that fits is installed, and the other one never is'],
    ],
  },
  {
    doc: 'docs/update-detection.md',
    says: 'So one bad newest manifest no longer hides an older valid release',
    backedBy: [['integration/trust/requirements.test.ts', 'reports a signed but malformed newest manifest and offers the newest valid release below it']],
  },
  {
    doc: 'docs/update-detection.md',
    says: '`GET /api/v1/repositories` reads it back as each product\'s `latestRelease`',
    backedBy: [['integration/trust/requirements-e2e.test.ts', 'shows the last verified release with its notes from the release cache']],
  },
  {
    doc: 'docs/api.md',
    says: "Past `api.authFailures.max` (20) refusals in the window, that remote's refused requests answer 429",
    backedBy: [['integration/security/auth-flood.test.ts', 'answers 401 up to the budget, then 429 with Retry-After']],
  },
  {
    doc: 'docs/on-disk-layout.md',
    says: 'are created 0700 whatever the umask',
    backedBy: [
      ['integration/security/private-state.test.ts', 'is 0700 for every folder and 0600 for every file otad wrote'],
      ['integration/security/private-state.test.ts', 'tightens a state folder someone created 0755 before otad started, and says so'],
    ],
  },
  {
    doc: 'docs/on-disk-layout.md',
    says: 'Log files (`logging.file`, `logging.auditFile`) are 0640 and stay so after logrotate.',
    backedBy: [['integration/deploy/deploy.test.ts', 'rotating real log files keeps the live files and their rotated copies at 0640']],
  },
  {
    doc: 'docs/envelope.md',
    says: '`cause` says why in words',
    backedBy: [
      ['unit/daemon/transition-cause.test.ts', 'never shows an XState internal name for any step'],
      ['integration/demo/demo.test.ts', 'updates robot-ai, rolls a broken release back by itself, and exits 0'],
    ],
  },
];

const norm = (s: string) => s.replace(/\s+/g, ' ');
const docs = new Map<string, string>();
const read = (file: string): string => {
  if (!docs.has(file)) docs.set(file, norm(readFileSync(join(REPO_ROOT, file), 'utf8')));
  return docs.get(file)!;
};

describe('what the README and the docs claim is backed by a test', () => {
  it.each(CLAIMS.map((c) => [`${c.doc}: ${c.says.slice(0, 90)}`, c] as const))('%s', (_title, claim) => {
    expect(read(claim.doc), `the claim is no longer worded this way in ${claim.doc}: re-check it and update this list`).toContain(norm(claim.says));
    for (const [file, title] of claim.backedBy) {
      const source = norm(readFileSync(join(REPO_ROOT, 'test', file), 'utf8'));
      expect(source, `${file} has no test titled "…${title}…"`).toContain(norm(title));
    }
  });
});
