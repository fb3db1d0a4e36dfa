/**
 * The seam between the daemon and the real world: a StepProvider builds a product's steps from a
 * StepContext. The daemon builds a set at start and again after each reload that changes
 * something; a run keeps the set it started with.
 */
import type { Steps } from '../../machines/types.js';
import type { Clock } from '../core/clock.js';
import type { AuditSink, Logger } from '../core/logger.js';
import type { Config } from '../config/load.js';
import type { ProductConfig } from '../config/schema.js';
import type { Store } from '../store/store.js';
import type { EventBus, ProgressMessage } from './event-bus.js';
import type { JournalVerdict } from './recovery-policy.js';
import type { RollbackPreview, RunFacts } from '../steps/rollback-preview.js';
import type { AheadOps, RehearsalSteps } from '../steps/stage-ahead.js';

/** What the daemon needs from the outside world for one product's steps. */
export interface StepContext {
  product: ProductConfig;
  config: Config;
  deviceId: string;
  store: Store;
  clock: Clock;
  logger: Logger;
  audit: AuditSink;
  bus: EventBus;
  /** Report progress of a long step (download, backup) to the bus. */
  progress(message: Omit<ProgressMessage, 'product'>): void;
  /** Inhibits currently held by the robot's app (checked by pre-check). */
  inhibits(): Array<{ holder: string; reason: string; expiresAt: number | null }>;
  /**
   * Download ahead: a provider that can stage a scheduled release before its slot hands the daemon
   * these operations, built on the same repository as the steps it returns (optional).
   */
  onAhead?(ops: AheadOps): void;
}

export interface StepProvider {
  /** False when no real steps are wired (the daemon says so instead of pretending to update). */
  readonly real: boolean;
  steps(ctx: StepContext): Steps;
  journalVerdict(product: ProductConfig, config: Config): Promise<JournalVerdict>;
  /** The newest network snapshot, for status (providers without a network view leave it out). */
  network?(): unknown;
  /**
   * Where a rollback would go now, read from disk. Providers without a disk view (test fakes)
   * leave it out: ROLLBACK is then offered and accepted as the machine allows.
   */
  previewRollback?(product: ProductConfig, config: Config, run: RunFacts): Promise<RollbackPreview>;
  /**
   * The real steps a rehearsal runs (check, pre-check, and staging into `scratchDir` instead of the
   * product's own staging place). Providers without real steps leave it out: rehearsal is refused.
   */
  rehearsal?(ctx: StepContext, scratchDir: string): RehearsalSteps;
}
