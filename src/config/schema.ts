/**
 * The configuration schema: every key with its default. docs/configuration.md documents the same
 * keys; a test checks that every key of the defaults appears there.
 */
import { z } from 'zod';
import { DEFAULT_API_HOST, DEFAULT_API_PORT, DEFAULT_STATE_DIR, DEFAULT_TOKENS_FILE } from './defaults.js';
import { parseDuration } from '../core/duration.js';

const duration = (fallback: string) =>
  z
    .union([z.number().int().nonnegative(), z.string()])
    .default(fallback)
    .transform((v, ctx) => {
      try {
        return parseDuration(v);
      } catch (e) {
        ctx.addIssue({ code: 'custom', message: (e as Error).message, input: v });
        return z.NEVER;
      }
    });

/**
 * A base URL otad fetches from (server, targets, mirror, environments): http: or https:, parsed as
 * otad parses it when it builds the repository, so a typo fails when the file is loaded (otad does
 * not start, `otad --check-config` names the key) instead of at the next check.
 */
const httpUrl = (example: string) =>
  z.string().superRefine((v, ctx) => {
    let url: URL;
    try {
      url = new URL(v.endsWith('/') ? v : `${v}/`);
    } catch {
      ctx.addIssue({ code: 'custom', message: `not a URL; expected e.g. ${example}`, input: v });
      return;
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      ctx.addIssue({ code: 'custom', message: `expected an http: or https: URL such as ${example}, got ${url.protocol}`, input: v });
    } else if (url.search !== '' || url.hash !== '') {
      ctx.addIssue({ code: 'custom', message: 'a base URL takes no query or fragment; otad appends file names to it', input: v });
    }
  });

const hhmm = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'expected a local time as HH:MM (24 h), for example "03:00"');

const timeZone = z.string().refine(
  (tz) => {
    if (tz === 'local') return true;
    try {
      new Intl.DateTimeFormat('en-US', { timeZone: tz });
      return true;
    } catch {
      return false;
    }
  },
  { message: 'expected an IANA time zone such as "Europe/Berlin", or "local"' },
);

export const ENVIRONMENTS = ['production', 'staging', 'test', 'simulation'] as const;

const healthCheck = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('unit'), unit: z.string().min(1) }),
  z.strictObject({ kind: z.literal('http'), url: z.url(), expectStatus: z.number().int().default(200), timeout: duration('5s') }),
  z.strictObject({ kind: z.literal('command'), command: z.array(z.string()).min(1), timeout: duration('30s') }),
  z.strictObject({
    kind: z.literal('version'),
    command: z.array(z.string()).min(1).optional(),
    file: z.string().optional(),
  }),
]);

const processUnit = z.strictObject({
  name: z.string().min(1),
  /** For the process-based service manager (no systemd): the command that runs the service. */
  command: z.array(z.string()).min(1),
  cwd: z.string().optional(),
  env: z.record(z.string(), z.string()).default({}),
});

export const scheduleSchema = z.strictObject({
  checkAt: hhmm.default('03:00'),
  installAt: hhmm.default('03:00'),
  /** An optional cron expression for the daily check (croner syntax); wins over checkAt. */
  checkCron: z.string().optional(),
  timeZone: timeZone.default('local'),
  /** Per-device delay window that spreads a fleet's 3 AM load. */
  window: duration('30m'),
  /** A check missed while the daemon was down is caught up when it starts within this time. */
  catchUp: duration('6h'),
  /** A scheduled install whose slot was missed by more than this waits for the next slot. */
  installCatchUp: duration('1h'),
  /**
   * SCHEDULE_3AM only: download, verify and stage the release before the install slot, so the slot
   * only backs up, switches and validates (docs/scheduling.md). `unmetered`: only on a link known
   * not to be metered (an unknown reading does not count as unmetered).
   */
  downloadAhead: z.enum(['immediately', 'unmetered', 'never']).default('never'),
  /** A download ahead that failed, or waits for an unmetered link, is tried again after this. */
  downloadAheadRetry: duration('15m'),
});

export const decisionSchema = z.strictObject({
  defaultChoice: z.enum(['UPDATE_NOW', 'SCHEDULE_3AM']).default('SCHEDULE_3AM'),
  choiceTimeout: duration('24h'),
  /** 0 turns the confirmation step off. */
  confirmTimeout: duration('0'),
});

export const precheckSchema = z.strictObject({
  minFreeBytes: z.number().int().nonnegative().default(0),
  minBatteryPercent: z.number().min(0).max(100).default(30),
  requireCharging: z.boolean().default(false),
  /** Wait and re-check this often while a pre-check does not pass. */
  retryInterval: duration('10m'),
  /** Product-specific check commands: exit 0 means it is safe. */
  commands: z.array(z.strictObject({ name: z.string(), command: z.array(z.string()).min(1), timeout: duration('30s') })).default([]),
});

/** The channel names a release manifest may carry (src/manifest/schema.ts). */
const channelName = z.string().regex(/^[a-z][a-z0-9-]{0,31}$/, 'expected a channel name such as stable or beta ([a-z][a-z0-9-], at most 32)');
const repositoryName = z.string().regex(/^[a-z][a-z0-9-]{0,31}$/, 'expected a repository name such as default or mirror ([a-z][a-z0-9-], at most 32)');

const repositorySchema = z.strictObject({
  /** The name an operator picks it by; the product's own `repository` is "default" unless named. */
  name: repositoryName.default('default'),
  kind: z.enum(['tuf', 'local']).default('tuf'),
  url: httpUrl('https://ota.example.com/').optional(),
  targetBaseUrl: httpUrl('https://cdn.example.com/targets/').optional(),
  /**
   * A second place for the targets, with a flat layout (GitHub release assets): packages, deltas and
   * indexes are fetched from `<mirrorUrl>/<asset name>` first, and from the server when that fails.
   */
  mirrorUrl: httpUrl('https://github.com/acme/robot-ai/releases/download/ota/').optional(),
  path: z.string().optional(),
});

/** Metered links and the download rate (docs/network.md#metered-links). */
export const productNetworkSchema = z.strictObject({
  /** On a metered link: download (within meteredBudget), wait (nothing is downloaded), allow (like any link). */
  metered: z.enum(['download', 'wait', 'allow']).default('allow'),
  /** Bytes per calendar month (local time) this product may download on metered links under `metered: download`; 0: no budget. */
  meteredBudget: z.number().int().nonnegative().default(0),
  /** Download rate cap in bytes per second, on any link; 0: none. */
  maxRateBps: z.number().int().nonnegative().default(0),
});

export const productSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/, 'expected a lower-case product name ([a-z0-9._-])'),
  type: z.string().optional(),
  installPath: z.string().refine((p) => p.startsWith('/'), 'expected an absolute path'),
  releasesDir: z.string().optional(),
  /** Relative to the install path: a file whose first line is the installed version. */
  versionFile: z.string().default('VERSION'),
  channel: channelName.default('stable'),
  allowPrerelease: z.boolean().default(false),
  allowDowngrade: z.boolean().default(false),
  services: z.array(z.string()).default([]),
  processUnits: z.array(processUnit).default([]),
  healthChecks: z.array(healthCheck).default([]),
  probation: z
    .strictObject({ window: duration('2m'), interval: duration('10s'), failureThreshold: z.number().int().min(1).default(3) })
    .prefault({}),
  preservedPaths: z.array(z.string()).default([]),
  hooks: z.strictObject({ timeout: duration('5m') }).prefault({}),
  backup: z
    .strictObject({
      enabled: z.boolean().default(true),
      keep: z.number().int().min(1).default(2),
      level: z.number().int().min(0).max(9).default(6),
    })
    .prefault({}),
  /** Caps on this product's packages; unset keys keep the defaults of src/package/limits.ts. */
  packageLimits: z
    .strictObject({
      maxEntries: z.number().int().min(1).optional(),
      maxTotalBytes: z.number().int().min(1).optional(),
      maxEntryBytes: z.number().int().min(1).optional(),
      /** Inflated bytes per compressed byte; 0 turns the ratio cap off. */
      maxCompressionRatio: z.number().int().min(0).optional(),
    })
    .prefault({}),
  repository: repositorySchema.prefault({}),
  /**
   * Further channels an operator may switch this product to (PUT /api/v1/products/{p}/source,
   * the dashboard, otactl source); `channel` is the default and always one of the choices.
   */
  channels: z.array(channelName).default([]),
  /** Further repositories an operator may switch this product to, each with its own name; `repository` is the default. */
  repositories: z.array(repositorySchema.extend({ name: repositoryName })).default([]),
  /** Policy: false refuses every switch of channel or repository (SOURCE_SWITCH_FORBIDDEN). */
  allowSourceSwitch: z.boolean().default(true),
  schedule: scheduleSchema.prefault({}),
  decision: decisionSchema.prefault({}),
  precheck: precheckSchema.prefault({}),
  network: productNetworkSchema.prefault({}),
});

export const fleetSchema = z
  .strictObject({
    /** Report each product's version and state to server.url's /api/v1/checkin, signed with the device key. */
    checkins: z.boolean().default(true),
    /** Check in this often besides after start and after every run (the server's halts arrive in the answers); 10 % jitter. */
    checkinInterval: duration('1h'),
    /** Labels the server groups robots by (a site for its disruption budget). */
    // The fleet server's rules for tags (src/server/checkin-body.ts), so a configured tag is never refused there.
    tags: z
      .record(z.string().regex(/^[a-z][a-z0-9_.-]{0,31}$/, 'expected a tag name of 1-32 characters of [a-z0-9_.-], starting with a letter'), z.string().max(128))
      .refine((t) => Object.keys(t).length <= 32, 'at most 32 tags')
      .default({}),
    lease: z
      .strictObject({
        /** Ask the fleet server for an update lease before each install's backup. */
        enabled: z.boolean().default(false),
        ttl: duration('10m'),
        /** Default: a third of ttl. */
        renewEvery: z.union([z.number().int().nonnegative(), z.string()]).optional(),
        unreachable: z.enum(['wait', 'proceed']).default('wait'),
      })
      .prefault({})
      .transform((l, ctx) => {
        let renewEvery = Math.floor(l.ttl / 3);
        if (l.renewEvery !== undefined) {
          try {
            renewEvery = parseDuration(l.renewEvery);
          } catch (e) {
            ctx.addIssue({ code: 'custom', message: (e as Error).message, input: l.renewEvery, path: ['renewEvery'] });
            return z.NEVER;
          }
        }
        if (l.ttl < 1000) ctx.addIssue({ code: 'custom', message: 'fleet.lease.ttl must be at least 1s', input: l.ttl, path: ['ttl'] });
        if (renewEvery <= 0 || renewEvery >= l.ttl) {
          ctx.addIssue({ code: 'custom', message: 'fleet.lease.renewEvery must be more than 0 and less than fleet.lease.ttl', input: l.renewEvery, path: ['renewEvery'] });
        }
        return { ...l, renewEvery };
      }),
  })
  .superRefine((f, ctx) => {
    if (f.checkinInterval < 1000) ctx.addIssue({ code: 'custom', message: 'fleet.checkinInterval must be at least 1s', input: f.checkinInterval, path: ['checkinInterval'] });
  });

/** Where a robot-state gate reads its condition (docs/pre-checks.md, "Robot-state gates"). */
export const ROBOT_STATE_SOURCES = ['upower', 'app', 'command'] as const;

/**
 * One robot-state gate: the sources it reads (two or more must agree), how old a reading may be,
 * and for the command source the program (exit 0: the condition holds, 1: it does not; for the
 * battery, the first number it prints is the percentage).
 */
const gateShape = <S extends readonly [string, ...string[]]>(sources: S) => ({
  sources: z.array(z.enum(sources)).min(1).refine((l) => new Set(l).size === l.length, 'a source may be listed once'),
  maxAge: duration('2m'),
  command: z.array(z.string()).min(1).optional(),
  timeout: duration('10s'),
});
function checkGate(g: { sources: readonly string[]; command?: string[] | undefined; maxAge: number }, ctx: z.RefinementCtx): void {
  const listed = g.sources.includes('command');
  if (listed && g.command === undefined) ctx.addIssue({ code: 'custom', message: 'the command source needs a command (argv, absolute path)', path: ['command'] });
  if (!listed && g.command !== undefined) ctx.addIssue({ code: 'custom', message: 'command is set but "command" is not among sources', path: ['command'] });
  if (g.maxAge < 1000) ctx.addIssue({ code: 'custom', message: 'maxAge must be at least 1s', path: ['maxAge'] });
}
const robotGate = <S extends readonly [string, ...string[]]>(sources: S) => z.strictObject(gateShape(sources)).superRefine(checkGate);

export const robotStateSchema = z.strictObject({
  /** UPower (org.freedesktop.UPower) for the battery and line power: 'system', 'session' or a D-Bus address. */
  upower: z.strictObject({ bus: z.string().default('system'), timeout: duration('5s') }).prefault({}),
  /** systemd-timedated (org.freedesktop.timedate1) for the clock gate. */
  timedated: z.strictObject({ bus: z.string().default('system'), timeout: duration('5s') }).prefault({}),
  /** The gates; one that is not listed is not checked. */
  gates: z
    .strictObject({
      docked: robotGate(ROBOT_STATE_SOURCES).optional(),
      charging: robotGate(ROBOT_STATE_SOURCES).optional(),
      battery: z
        .strictObject({
          ...gateShape(ROBOT_STATE_SOURCES),
          minPercent: z.number().min(0).max(100).default(30),
          /** any: the level alone decides; not-falling: refused while discharging; rising: only while charging. */
          trend: z.enum(['any', 'not-falling', 'rising']).default('any'),
        })
        .superRefine(checkGate)
        .optional(),
      stationary: robotGate(['app', 'command'] as const).optional(),
      clock: robotGate(['timedated', 'command'] as const).optional(),
    })
    .prefault({}),
});

const endpoint = z.strictObject({ serverUrl: httpUrl('https://ota.example.com/'), targetBaseUrl: httpUrl('https://cdn.example.com/targets/').optional() });

export const configSchema = z.strictObject({
  environment: z.enum(ENVIRONMENTS).default('production'),
  environments: z
    .record(z.string(), endpoint)
    .default({
      production: { serverUrl: 'https://ota.example.invalid' },
      staging: { serverUrl: 'https://ota-staging.example.invalid' },
      test: { serverUrl: 'http://127.0.0.1:8780' },
      simulation: { serverUrl: 'http://127.0.0.1:8780' },
    }),
  /** Simulation skips real backups and service restarts, and says so loudly. */
  simulation: z.boolean().default(false),
  server: z
    .strictObject({
      url: httpUrl('https://ota.example.com/').optional(),
      targetBaseUrl: httpUrl('https://cdn.example.com/targets/').optional(),
      caFile: z.string().optional(),
      connectTimeout: duration('10s'),
      headersTimeout: duration('30s'),
      idleTimeout: duration('30s'),
      downloadDeadline: duration('2h'),
      minThroughputBps: z.number().int().nonnegative().default(1024),
      retries: z.number().int().min(0).default(5),
      /** Older name of fleet.checkins: false here also turns check-ins off. */
      checkIn: z.boolean().default(true),
    })
    .prefault({}),
  paths: z
    .strictObject({
      stateDir: z.string().default(DEFAULT_STATE_DIR),
      database: z.string().optional(),
      cacheDir: z.string().optional(),
      backupDir: z.string().optional(),
      lockFile: z.string().optional(),
      trustedRoot: z.string().default('/etc/ota/root.json'),
      productTypesDir: z.string().optional(),
      inhibitFile: z.string().default('/run/ota/inhibit'),
    })
    .prefault({}),
  logging: z
    .strictObject({
      level: z.enum(['error', 'warn', 'info', 'debug']).default('info'),
      /** JSON lines on stdout for journald; off when only the file should be written. */
      stdout: z.boolean().default(true),
      file: z.string().optional(),
      auditFile: z.string().optional(),
    })
    .prefault({}),
  api: z
    .strictObject({
      enabled: z.boolean().default(true),
      host: z.string().default(DEFAULT_API_HOST),
      port: z.number().int().min(0).max(65535).default(DEFAULT_API_PORT),
      socketPath: z.string().optional(),
      tokensFile: z.string().default(DEFAULT_TOKENS_FILE),
      allowedHosts: z.array(z.string()).default(['localhost', '127.0.0.1', '[::1]']),
      allowedOrigins: z.array(z.string()).default([]),
      bodyLimitBytes: z.number().int().min(1024).default(64 * 1024),
      controlRateLimit: z.strictObject({ window: duration('1m'), max: z.number().int().min(1).default(30) }).prefault({}),
      /** Refused requests per remote and window: the first of each kind audited, the rest summarised; past max, 429. */
      authFailures: z.strictObject({ window: duration('1m'), max: z.number().int().min(1).default(20) }).prefault({}),
    })
    .prefault({}),
  dbus: z
    .strictObject({
      enabled: z.boolean().default(false),
      /** 'system', 'session', or a D-Bus address such as unix:path=/run/otad-bus. */
      bus: z.string().default('system'),
      name: z.string().default('io.otad.Daemon1'),
    })
    .prefault({}),
  /** Where the metered state of the link is read (NetworkManager's Metered property). */
  networkManager: z
    .strictObject({
      /** 'system', 'session', or a D-Bus address such as unix:path=/run/dbus/system_bus_socket. */
      bus: z.string().default('system'),
    })
    .prefault({}),
  recovery: z
    .strictObject({
      /** Restores of one run in one state before the crash-loop guard ends the run. */
      maxRestoresPerState: z.number().int().min(1).default(3),
    })
    .prefault({}),
  inhibit: z.strictObject({ maxHold: duration('4h'), leaseTtl: duration('1m') }).prefault({}),
  /**
   * The two-way mission lease (src/daemon/maintenance.ts): ask the robot's mission side for a
   * maintenance window before an install, wait answerTimeout for a grant or a denial, and when
   * nobody answers either proceed or keep waiting.
   */
  maintenance: z
    .strictObject({
      request: z.boolean().default(false),
      answerTimeout: duration('30s'),
      onNoAnswer: z.enum(['wait', 'proceed']).default('proceed'),
    })
    .prefault({}),
  /**
   * How much finished history the database keeps (runs, their transitions and snapshots, choices):
   * each update run costs about 30 KB, so without a bound the database grows forever.
   */
  history: z
    .strictObject({
      /** Finished runs kept per product, newest first. */
      keepRuns: z.number().int().min(1).default(100),
      /** Finished runs that ended longer ago are dropped (0: no age limit). */
      maxAge: duration('90d'),
      /** Audit entries kept in the database, newest first. */
      auditKeep: z.number().int().min(100).default(10_000),
      /** Audit entries older than this are dropped from the database (0: no age limit). */
      auditMaxAge: duration('365d'),
    })
    .prefault({}),
  /** Robot-state gates of the pre-check (docked, charging, battery, stationary, clock) and where they read. */
  robotState: robotStateSchema.prefault({}),
  /** The fleet server (docs/fleet-protocol.md): signed check-ins, halts, and the update lease. */
  fleet: fleetSchema.prefault({}),
  /** Defaults copied into every product that does not set its own. */
  schedule: scheduleSchema.prefault({}),
  decision: decisionSchema.prefault({}),
  products: z.array(productSchema).default([]),
});

export type RawConfig = z.input<typeof configSchema>;
export type ParsedConfig = z.output<typeof configSchema>;
export type ProductConfig = z.output<typeof productSchema>;
export type FleetConfig = z.output<typeof fleetSchema>;
export type RobotStateConfig = z.output<typeof robotStateSchema>;
export type HealthCheckConfig = z.output<typeof healthCheck>;
