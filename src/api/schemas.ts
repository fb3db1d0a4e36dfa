/**
 * The shapes of the REST API, as zod schemas: request bodies and queries are parsed with them, and
 * the OpenAPI document (openapi.ts) is generated from the same schemas, so the document cannot
 * drift from what the handlers accept. Tests validate real responses against the served document.
 */
import { z } from 'zod';

/** The named schemas of the API: the OpenAPI document's components. */
export const apiSchemas = z.registry<{ id: string }>();

const name = z.string().regex(/^[a-z0-9][a-z0-9._-]*$/).max(64);
const ms = z.number().describe('milliseconds since the Unix epoch');
const nullableMs = ms.nullable();

export const errorBodySchema = z
  .object({
    error: z.object({
      code: z.string().describe('stable error code (docs/errors.md)'),
      message: z.string(),
      details: z.record(z.string(), z.unknown()).optional(),
    }),
  })
  .register(apiSchemas, { id: 'Error' });

// ----- requests ------------------------------------------------------------------------------

export const eventRequestSchema = z
  .strictObject({
    product: name.optional().describe('optional when the robot manages one product'),
    type: z.string().min(1).max(64).describe('UPDATE_NOW or SCHEDULE_3AM (the choices), or CHECK_NOW, CONFIRM, CANCEL, ROLLBACK, RESET'),
    reason: z.string().max(200).optional(),
    markBad: z.boolean().optional().describe('ROLLBACK only: also mark the release it leaves bad, so no check offers it again (undo with DELETE /products/{product}/releases/{version}/bad)'),
  })
  .register(apiSchemas, { id: 'EventRequest' });

/** Path parameters of the release endpoints. */
export const releasePathSchema = z.strictObject({ product: name, version: z.string().regex(/^[0-9A-Za-z][0-9A-Za-z._+-]{0,127}$/) });
export const productPathSchema = z.strictObject({ product: name });

export const inhibitRequestSchema = z
  .strictObject({
    holder: z.string().regex(/^[\w.@:-]{1,64}$/),
    reason: z.string().min(1).max(200),
    durationMs: z.number().int().positive().optional().describe('capped by inhibit.maxHold'),
  })
  .register(apiSchemas, { id: 'InhibitRequest' });

export const maintenanceAnswerSchema = z
  .strictObject({
    answer: z.enum(['grant', 'deny']),
    requestId: z.string().max(64).optional().describe('the id of MaintenanceRequested; absent or empty: whichever request is waiting'),
    reason: z.string().max(200).optional(),
  })
  .register(apiSchemas, { id: 'MaintenanceAnswer' });

export const robotStateReportSchema = z
  .strictObject({
    docked: z.boolean().optional(),
    charging: z.boolean().optional(),
    batteryPercent: z.number().min(0).max(100).optional(),
    batteryTrend: z.enum(['rising', 'steady', 'falling']).optional(),
    stationary: z.boolean().optional(),
  })
  .refine((r) => Object.values(r).some((v) => v !== undefined), 'report at least one of docked, charging, batteryPercent, batteryTrend, stationary')
  .register(apiSchemas, { id: 'RobotStateReport' });

export const ackRequestSchema = z
  .strictObject({
    product: name,
    version: z.string().max(64).nullable().optional().describe('omit or null: every pending release of the product'),
  })
  .register(apiSchemas, { id: 'AckRequest' });

const limit = (max: number) => z.coerce.number().int().min(1).max(max).optional();
export const historyQuerySchema = z.strictObject({ product: name.optional(), limit: limit(1000), offset: z.coerce.number().int().min(0).optional() });
export const transitionsQuerySchema = z.strictObject({
  product: name.optional(),
  runId: z.string().max(64).optional(),
  afterSeq: z.coerce.number().int().min(0).optional(),
  limit: limit(1000),
});
export const logsQuerySchema = z.strictObject({
  level: z.enum(['error', 'warn', 'info', 'debug']).optional(),
  limit: limit(2000),
  contains: z.string().max(200).optional(),
  since: z.coerce.number().int().min(0).optional(),
  product: z.string().max(100).optional(),
});

// ----- responses -----------------------------------------------------------------------------

const errorInfo = z.object({ code: z.string(), category: z.string(), retryable: z.boolean(), message: z.string(), details: z.record(z.string(), z.unknown()).optional() });
const progress = z.object({
  product: z.string(),
  runId: z.string(),
  step: z.string(),
  bytes: z.number(),
  total: z.number().nullable(),
  rateBps: z.number().nullable(),
  etaMs: z.number().nullable(),
  message: z.string().optional(),
  probation: z
    .object({ round: z.number().int(), rounds: z.number().int(), checks: z.array(z.object({ name: z.string(), ok: z.boolean().nullable() })) })
    .optional()
    .describe('step probation only: the round just finished, about how many the window holds, each check\'s latest answer'),
});
const offer = z.looseObject({ product: z.string(), version: z.string(), channel: z.string(), notes: z.string() });

export const inhibitRecordSchema = z.object({ holder: z.string(), reason: z.string(), since: ms, expiresAt: ms }).register(apiSchemas, { id: 'Inhibit' });
export const heldInhibitSchema = z
  .object({
    holder: z.string(),
    reason: z.string(),
    since: ms,
    expiresAt: ms.nullable().describe('null: an fd inhibitor (D-Bus Inhibit), held until its holder closes the fd or dies'),
    kind: z.enum(['lease', 'fd']),
  })
  .register(apiSchemas, { id: 'HeldInhibit' });
export const inhibitRenewSchema = z
  .strictObject({ durationMs: z.number().int().positive().optional().describe('default inhibit.leaseTtl, capped by inhibit.maxHold') })
  .register(apiSchemas, { id: 'InhibitRenewRequest' });

export const rollbackTargetSchema = z
  .object({
    version: z.string().nullable().describe('the release a rollback returns to; null only when a failed first install is undone'),
    method: z.enum(['previous-release', 'backup', 'undo-first-install']),
    leaves: z.string().nullable().describe('the release it leaves: removed from disk, marked bad only when asked (markBad) or after a failure'),
  })
  .register(apiSchemas, { id: 'RollbackTarget' });

const durationMs = z.number().min(0).describe('milliseconds');
export const downtimeSchema = z
  .object({
    totalMs: durationMs.nullable().describe('first service stop to the first probation round with every health probe green; null while open, or when it cannot be measured (note says why)'),
    stopMs: durationMs.describe('the services stopping (reverse order)'),
    switchMs: durationMs.describe('the link switched to the release, the journal written'),
    startMs: durationMs.describe('the services starting (in order)'),
    probeMs: durationMs.describe('from started to the first all-green round'),
    waitMs: durationMs.describe('part of probeMs: rounds not yet all green and the probe interval between them (the product and the configuration)'),
    otadMs: durationMs.nullable().describe("totalMs - waitMs: otad's own share"),
    clock: z.enum(['monotonic', 'wall-clock']).describe('wall-clock: a reboot fell inside the downtime, that part was measured on the wall clock'),
    acrossRestart: z.boolean().describe('an otad restart (crash, kill, power cut) fell inside the downtime'),
    stoppedAt: ms,
    greenAt: nullableMs,
    greenOn: z.enum(['new', 'old']).nullable().describe('new: the updated release came back green; old: the release a rollback returned to'),
    open: z.enum(['stop', 'switch', 'start', 'probe']).nullable().describe('the phase in progress while not yet green'),
    note: z.string().nullable().describe('why totalMs is null'),
  })
  .register(apiSchemas, { id: 'Downtime' });
export const downtimeSummarySchema = z
  .object({
    count: z.number().int().describe('runs with a measured total'),
    lastMs: durationMs.nullable().describe('the newest measured run'),
    medianMs: durationMs.nullable(),
    maxMs: durationMs.nullable(),
  })
  .register(apiSchemas, { id: 'DowntimeSummary' });

export const productStatusSchema = z
  .object({
    product: z.string(),
    state: z.string(),
    runId: z.string().nullable(),
    runKind: z.string().nullable(),
    installedVersion: z.string().nullable(),
    offeredVersion: z.string().nullable(),
    offer: offer.nullable(),
    releaseNotes: z.string().nullable(),
    choice: z.object({ choice: z.string(), source: z.string(), at: ms }).nullable(),
    allowedEvents: z.array(z.string()).describe('the events this product accepts now'),
    deadlines: z.object({ choice: nullableMs, confirm: nullableMs, scheduledAt: nullableMs, preCheckRetryAt: nullableMs }),
    nextCheckAt: nullableMs,
    preCheckReasons: z.array(z.object({ code: z.string(), message: z.string() })),
    progress: progress.nullable(),
    lastCheckAt: nullableMs,
    lastOutcome: z.string().nullable(),
    lastDowntime: downtimeSchema
      .extend({ runId: z.string() })
      .nullable()
      .describe("the downtime of the product's newest run that stopped its services"),
    error: errorInfo.nullable(),
    notification: z.object({ version: z.string(), notes: z.string(), foundAt: ms }).nullable(),
    recovery: z.object({ action: z.string(), reason: z.string() }).nullable(),
    saveFailure: z
      .object({
        to: z.string().describe('the state the machine moved to; `state` stays the saved one until this move is written'),
        error: errorInfo,
        attempts: z.number().int(),
        since: ms,
        nextAttemptAt: nullableMs,
      })
      .nullable()
      .optional()
      .describe("the product's last move could not be saved (disk full, I/O error): otad retries on its own and accepts no event until it is saved"),
    rollbackTarget: rollbackTargetSchema
      .nullable()
      .describe('where a rollback would go, as of the last state change; null: nothing to go back to (ROLLBACK is then not allowed), or no view of the disk'),
    maintenance: z
      .object({
        active: z.boolean().describe('true while an install disrupts (or is about to disrupt) the robot: dispatch no missions'),
        since: nullableMs,
        request: z
          .object({ requestId: z.string(), product: z.string(), runId: z.string(), version: z.string(), requestedAt: ms, answerBy: ms })
          .nullable()
          .describe('the maintenance request waiting for GrantMaintenance or DenyMaintenance'),
        lastAnswer: z.object({ requestId: z.string(), answer: z.enum(['granted', 'denied', 'no-answer']), by: z.string().nullable(), reason: z.string().nullable(), at: ms }).nullable(),
      })
      .register(apiSchemas, { id: 'Maintenance' }),
    downloadAhead: z
      .object({
        policy: z.enum(['immediately', 'unmetered', 'never']),
        state: z.enum(['off', 'idle', 'waiting', 'staging', 'staged', 'failed', 'used']),
        version: z.string().nullable(),
        stagedAt: nullableMs,
        verifiedAt: nullableMs.describe('when the staged tree was last verified against the signed tree index'),
        downloadBytes: z.number().int().nullable(),
        reason: z.string().nullable().describe('why it waits or failed'),
        nextAttemptAt: nullableMs,
        lastDiscard: z.object({ version: z.string(), reason: z.string(), at: ms }).nullable().describe('the last staged-ahead release thrown away, and why'),
      })
      .optional()
      .describe('download ahead of the install slot (schedule.downloadAhead, SCHEDULE_3AM only)')
      .register(apiSchemas, { id: 'DownloadAhead' }),
  })
  .register(apiSchemas, { id: 'ProductStatus' });

const robotGate = z.enum(['docked', 'charging', 'battery', 'stationary', 'clock']);
const stamped = (value: z.ZodType) => z.object({ value, at: ms, by: z.string().describe('who reported it: the caller and the interface') });
/** One robot-state gate's verdict: its readings (each with its age) and its reasons (none: it passed). */
export const robotGateVerdictSchema = z
  .object({
    gate: robotGate,
    maxAgeMs: z.number(),
    readings: z.array(
      z.union([
        z.object({ source: z.string(), value: z.unknown(), at: ms, detail: z.string(), ageMs: z.number().optional() }),
        z.object({ source: z.string(), missing: z.string(), ageMs: z.number().optional() }),
      ]),
    ),
    reasons: z.array(z.object({ code: z.string(), message: z.string() })),
  })
  .register(apiSchemas, { id: 'RobotGateVerdict' });
export const robotStateStatusSchema = z
  .object({
    gates: z.array(robotGate).describe('the gates configured (robotState.gates), in check order'),
    reports: z
      .object({
        docked: stamped(z.boolean()).optional(),
        charging: stamped(z.boolean()).optional(),
        batteryPercent: stamped(z.number()).optional(),
        batteryTrend: stamped(z.enum(['rising', 'steady', 'falling'])).optional(),
        stationary: stamped(z.boolean()).optional(),
      })
      .describe('what the app reported last (POST /api/v1/robot-state), per field, with when and by whom'),
    lastCheck: z
      .object({
        at: ms,
        product: z.string(),
        verdicts: z.array(robotGateVerdictSchema),
      })
      .nullable()
      .describe('the last evaluation of the robot-state gates by a pre-check; null before the first'),
  })
  .register(apiSchemas, { id: 'RobotStateStatus' });

export const statusSchema = z
  .object({
    deviceId: z.string(),
    otadVersion: z.string(),
    machineVersion: z.number().int(),
    environment: z.string(),
    simulation: z.boolean(),
    startedAt: ms,
    now: ms,
    stepsConfigured: z.boolean(),
    products: z.array(productStatusSchema),
    inhibits: z.array(heldInhibitSchema),
    network: z.record(z.string(), z.unknown()).nullable(),
    deviceKey: z
      .object({
        publicKey: z.string().describe('base64 of the 32 raw ed25519 public key bytes, as the fleet server records it'),
        fingerprint: z.string().describe('first 16 hex digits of the SHA-256 of the raw key, what the fleet page shows'),
      })
      .nullable()
      .describe('the device key this robot signs fleet requests with; null when otad runs without one'),
    robotState: robotStateStatusSchema,
    fleetHalts: z
      .array(z.object({ product: z.string(), version: z.string(), state: z.string(), reason: z.string(), learnedAt: ms }))
      .describe('rollouts the fleet server reported halted or paused: no install of that version starts until a later answer lifts it'),
  })
  .register(apiSchemas, { id: 'Status' });

export const dispatchResultSchema = z
  .object({ product: z.string(), event: z.string(), state: z.string().describe('the state right after the event'), runId: z.string().nullable() })
  .register(apiSchemas, { id: 'DispatchResult' });

export const runSchema = z
  .object({
    runId: z.string(),
    product: z.string(),
    kind: z.string(),
    startedAt: ms,
    endedAt: nullableMs,
    fromVersion: z.string().nullable(),
    toVersion: z.string().nullable(),
    state: z.string(),
    outcome: z.string().nullable(),
    error: errorInfo.nullable(),
    downtime: downtimeSchema.nullable().describe('null: the run stopped no service'),
    window: z
      .object({
        fromScheduled: z.boolean().describe('the window began in the install slot (scheduled → preCheck)'),
        startedAt: ms,
        endedAt: nullableMs,
        ms: z.number().int().nullable().describe('from the first preCheck to the end of the run'),
        stagingMs: z.number().int().describe('of which in the staging step'),
        stagedAhead: z.boolean().describe('the run used a release staged ahead of the slot instead of downloading'),
      })
      .nullable()
      .optional()
      .describe('the install window, from the transition log; null: the run never reached preCheck'),
  })
  .register(apiSchemas, { id: 'Run' });

export const rehearsalSchema = z
  .object({
    product: z.string(),
    startedAt: ms,
    durationMs: z.number().int(),
    installedVersion: z.string().nullable(),
    available: z.boolean().describe('false: the check found nothing newer, nothing was downloaded'),
    version: z.string().nullable(),
    stoppedAt: z.enum(['check', 'preCheck', 'stage']).nullable().describe('where the rehearsal stopped early (null: it went through staging)'),
    error: z.object({ code: z.string(), message: z.string() }).nullable(),
    download: z.object({ bytes: z.number().int(), what: z.string() }).nullable(),
    disk: z.object({ downloadBytes: z.number().int(), stagedBytes: z.number().int(), backupBytes: z.number().int(), minFreeBytes: z.number().int(), totalBytes: z.number().int(), basis: z.string() }).nullable(),
    staged: z.object({ via: z.string(), indexVerified: z.boolean(), entries: z.number().int(), bytes: z.number().int() }).nullable(),
    services: z.object({ manager: z.string(), units: z.array(z.string()), wouldRestart: z.array(z.string()), note: z.string() }),
    preCheck: z
      .object({
        ok: z.boolean().describe('false: an install now would not start; its pre-check would block with `reasons`'),
        reasons: z.array(z.object({ code: z.string(), message: z.string() })).describe('the reasons a real pre-check would give now (the product\'s own, then the robot-state gates\'); empty when it would pass'),
        verdicts: z
          .array(z.object({ condition: z.string(), verdict: z.enum(['pass', 'block', 'not-asked']), detail: z.string() }))
          .describe('one per condition of the pre-check, then one per robot-state gate ("robot-state <gate>"), then the fleet gate and the maintenance window (not asked)'),
        robotState: z.array(robotGateVerdictSchema).describe('each robot-state gate (robotState.gates) decided as a real install would: readings and reasons; empty when none is configured'),
      })
      .nullable(),
    downtime: z.object({
      predictedMs: z.number().int().nullable().describe('null: no history to predict from'),
      basis: z.string(),
      downtimeRecords: z.literal('no history'),
      applyStep: z.object({ runs: z.number().int(), medianMs: z.number().int(), maxMs: z.number().int() }).nullable(),
      wholeRun: z.object({ runs: z.number().int(), medianMs: z.number().int() }).nullable(),
    }),
    scratchDir: z.string().describe('where it staged (removed again before the answer)'),
  })
  .register(apiSchemas, { id: 'Rehearsal' });

export const transitionSchema = z
  .object({
    seq: z.number().int(),
    product: z.string(),
    runId: z.string().nullable(),
    from: z.string(),
    to: z.string(),
    eventType: z.string(),
    event: z.unknown(),
    at: ms,
    machineVersion: z.number().int(),
    snapshot: z.unknown().optional(),
  })
  .register(apiSchemas, { id: 'Transition' });

export const historySchema = z
  .object({
    runs: z.array(runSchema),
    downtime: downtimeSummarySchema.describe('over every retained run (of the product asked for), not only this page'),
  })
  .register(apiSchemas, { id: 'History' });
export const transitionsSchema = z
  .object({ transitions: z.array(transitionSchema), nextAfterSeq: z.number().int().describe('pass as afterSeq to get the next page') })
  .register(apiSchemas, { id: 'Transitions' });
export const logsSchema = z
  .object({ lines: z.array(z.object({ time: ms, level: z.string(), message: z.string(), fields: z.record(z.string(), z.unknown()) })) })
  .register(apiSchemas, { id: 'Logs' });
export const runExportSchema = z
  .object({
    format: z.literal('otad-run/1'),
    exportedAt: ms,
    deviceId: z.string(),
    machineVersion: z.number().int(),
    run: runSchema,
    initialSnapshot: z.unknown().describe('the machine snapshot before the run (null: a fresh machine)'),
    transitions: z.array(transitionSchema),
  })
  .register(apiSchemas, { id: 'RunExport' });
export const healthSchema = z
  .object({ ok: z.boolean(), uptimeMs: z.number(), products: z.array(z.object({ product: z.string(), state: z.string() })) })
  .register(apiSchemas, { id: 'Health' });
export const ackResponseSchema = z.object({ acknowledged: z.number().int() }).register(apiSchemas, { id: 'AckResult' });
export const maintenanceAnsweredSchema = z
  .object({ product: z.string(), requestId: z.string(), answer: z.enum(['grant', 'deny']) })
  .register(apiSchemas, { id: 'MaintenanceAnswered' });

export const robotStateAcceptedSchema = z
  .object({
    accepted: z.array(z.enum(['docked', 'charging', 'batteryPercent', 'batteryTrend', 'stationary'])).describe('the fields taken'),
    at: ms.describe("otad's time of the report: each reading's age counts from it"),
  })
  .register(apiSchemas, { id: 'RobotStateAccepted' });
export const releaseResponseSchema = z.object({ released: z.literal(true), holder: z.string() }).register(apiSchemas, { id: 'InhibitReleased' });

export const productDefinitionSchema = z
  .object({
    product: z.string(),
    type: z.string().nullable().describe('the product type (products/ registry), when configured'),
    installPath: z.string(),
    channel: z.string(),
    allowPrerelease: z.boolean(),
    services: z.array(z.string()).describe('systemd units, then process units: what an install or rollback restarts'),
    healthChecks: z.array(z.object({ kind: z.string(), target: z.string() })),
    preservedPaths: z.array(z.string()),
    probation: z.object({ windowMs: z.number(), intervalMs: z.number(), failureThreshold: z.number().int() }),
    backup: z.object({ enabled: z.boolean(), keep: z.number().int() }),
    repository: z.object({ name: z.string(), kind: z.enum(['tuf', 'local']), location: z.string().nullable() }),
  })
  .register(apiSchemas, { id: 'ProductDefinition' });
export const productsSchema = z.object({ products: z.array(productDefinitionSchema) }).register(apiSchemas, { id: 'Products' });

export const repositoryStatusSchema = z
  .object({
    product: z.string(),
    kind: z.enum(['tuf', 'local']),
    repository: z.string().describe("the repository's name among the product's choices (GET /products/{product}/source)"),
    location: z.string().nullable().describe('the metadata URL (tuf) or folder (local) otad reads'),
    channel: z.string(),
    reachable: z.boolean().nullable().describe('null: nothing to probe (no location configured)'),
    latencyMs: z.number().nullable().describe("round trip of otad's own probe request"),
    httpStatus: z.number().int().nullable(),
    probedAt: nullableMs,
    problem: z.string().nullable(),
    metadata: z.array(z.object({ role: z.string(), version: z.number().int().nullable(), expiresAt: nullableMs, signedBy: z.array(z.string()).describe('key ids, first 16 hex digits') })),
    metadataExpiresAt: nullableMs.describe('the earliest expiry of the trusted metadata otad holds'),
    lastSuccessfulCheckAt: nullableMs,
    latestRelease: z
      .object({ version: z.string(), channel: z.string(), releasedAt: z.string(), notes: z.string(), checkedAt: z.number() })
      .nullable()
      .describe('the newest release the last successful check verified, from the release cache: its notes are readable offline'),
    choices: z
      .array(
        z.object({
          name: z.string(),
          kind: z.enum(['tuf', 'local']),
          location: z.string().nullable(),
          inUse: z.boolean(),
          reachable: z.boolean().nullable(),
          latencyMs: z.number().nullable(),
          httpStatus: z.number().int().nullable(),
          probedAt: nullableMs,
          problem: z.string().nullable(),
        }),
      )
      .describe('every repository the product may be switched to, each probed by otad like the one in use'),
  })
  .register(apiSchemas, { id: 'RepositoryStatus' });
export const repositoriesSchema = z.object({ repositories: z.array(repositoryStatusSchema) }).register(apiSchemas, { id: 'Repositories' });

export const badMarkSchema = z
  .object({
    at: ms,
    reason: z.string(),
    by: z.enum(['automatic', 'operator']).nullable().describe('automatic: a failed apply or validation, a rejected package, a crash loop; operator: a rollback with markBad. Null: marked before otad recorded this'),
    actor: z.string().nullable().describe("the operator's token name or D-Bus caller, or otad"),
    runId: z.string().nullable(),
  })
  .register(apiSchemas, { id: 'BadMark' });

export const releaseEntrySchema = z
  .object({
    version: z.string(),
    installed: z.boolean().describe('the version installed now'),
    previous: z.boolean().describe('the version a rollback would return to'),
    onDisk: z.boolean().describe('kept as a release directory'),
    backup: z.boolean().describe('a backup of it is in the backup directory'),
    channel: z.string().nullable(),
    releasedAt: nullableMs,
    foundAt: nullableMs.describe('when a check first found it; null: known only from disk'),
    bad: badMarkSchema.nullable().describe('null: not marked bad'),
  })
  .register(apiSchemas, { id: 'ReleaseEntry' });

export const releaseHistorySchema = z
  .object({
    product: z.string(),
    installedVersion: z.string().nullable(),
    rollbackTarget: rollbackTargetSchema.nullable(),
    rollbackUnavailable: z.string().nullable().describe('why there is nothing to roll back to'),
    releases: z.array(releaseEntrySchema).describe('newest first'),
  })
  .register(apiSchemas, { id: 'ReleaseHistory' });

export const unmarkResultSchema = z
  .object({ product: z.string(), version: z.string(), cleared: badMarkSchema.describe('the mark that was cleared') })
  .register(apiSchemas, { id: 'UnmarkResult' });

export const sourceSchema = z
  .object({
    product: z.string(),
    channel: z.string().describe('the channel the next check reads'),
    repository: z.string().describe('the name of the repository the next check reads'),
    defaults: z.object({ channel: z.string(), repository: z.string() }).describe('what the configuration names (products[].channel, products[].repository.name)'),
    channels: z.array(z.string()).describe('the channels an operator may choose: products[].channel and channels'),
    repositories: z.array(z.object({ name: z.string(), kind: z.enum(['tuf', 'local']), location: z.string().nullable() })).describe('the repositories an operator may choose: products[].repository and repositories'),
    switchAllowed: z.boolean().describe('false: the configuration forbids switching (allowSourceSwitch: false)'),
    selected: z.object({ at: ms, actor: z.string().nullable(), via: z.string() }).nullable().describe("the operator's choice in force; null: the configured default applies"),
    changed: z.boolean().optional().describe('PUT only: false when the product already followed this channel and repository'),
  })
  .register(apiSchemas, { id: 'ProductSource' });

const choiceName = z.string().regex(/^[a-z][a-z0-9-]{0,31}$/, 'expected a name such as stable, beta or mirror ([a-z][a-z0-9-], at most 32)');
export const sourceRequestSchema = z
  .strictObject({ channel: choiceName.optional(), repository: choiceName.optional() })
  .refine((b) => b.channel !== undefined || b.repository !== undefined, { message: 'name a channel, a repository or both' })
  .register(apiSchemas, { id: 'SourceRequest' });

/** Parses with a schema; a failure becomes API_INVALID_REQUEST naming each offending field. */
export function describeIssues(error: z.ZodError): string[] {
  return error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`);
}
