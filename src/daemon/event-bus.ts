/**
 * The internal event bus: typed publish/subscribe shared by the REST API, Socket.IO, D-Bus and
 * metrics. Publishing never waits for a subscriber: each subscriber has its own bounded queue,
 * drained asynchronously; a slow one loses its oldest messages (and is told how many), it never
 * blocks the machine.
 */
import type { ErrorInfo, RunOutcome } from '../../machines/types.js';

export interface TransitionMessage {
  seq: number;
  product: string;
  runId: string | null;
  from: string;
  to: string;
  /** The machine's event type, as the transition log records it. */
  event: string;
  /** Why, in words (transition-cause.ts): "check found 1.1.0", "health check failed (…)". */
  cause: string;
  at: number;
}

export interface ProgressMessage {
  product: string;
  runId: string;
  step: string;
  bytes: number;
  total: number | null;
  rateBps: number | null;
  etaMs: number | null;
  message?: string;
  /** Step `probation` only: the round just finished, about how many the window holds, and each check's latest answer. */
  probation?: { round: number; rounds: number; checks: Array<{ name: string; ok: boolean | null }> };
}

export interface NotificationMessage {
  product: string;
  /**
   * `source-changed`: an operator switched the product's channel or repository (PUT /api/v1/products/{p}/source).
   * `releases-changed`: where a rollback would go, or a bad mark, changed (the releases list is worth refetching).
   * `maintenance-requested`: otad asks for a maintenance window before the install (answer with
   * GrantMaintenance or DenyMaintenance); `maintenance-started` / `maintenance-ended`: the robot is
   * in maintenance from the first until the second (dispatch no missions); `maintenance-answered`:
   * a request ended without a window (denied, or no answer under onNoAnswer: wait).
   */
  kind: 'update-available' | 'committed' | 'rolled-back' | 'failed' | 'run-ended' | 'releases-changed' | 'maintenance-requested' | 'maintenance-started' | 'maintenance-ended' | 'maintenance-answered' | 'source-changed';
  version: string | null;
  notes?: string;
  outcome?: RunOutcome | null;
  error?: ErrorInfo | null;
  runId?: string | null;
  /** maintenance-requested: the request to answer; maintenance-answered: how it ended. */
  maintenance?: { requestId: string; answerBy?: number; timeoutMs?: number; answer?: 'denied' | 'no-answer' };
}

export interface LogMessage {
  time: number;
  level: string;
  message: string;
  fields: Record<string, unknown>;
}

export interface BusTopics {
  transition: TransitionMessage;
  progress: ProgressMessage;
  notification: NotificationMessage;
  log: LogMessage;
}

export type Topic = keyof BusTopics;
export type Handler<T extends Topic> = (message: BusTopics[T], meta: { dropped: number }) => void | Promise<void>;

interface Subscriber<T extends Topic> {
  handler: Handler<T>;
  queue: Array<BusTopics[T]>;
  draining: boolean;
  dropped: number;
  limit: number;
}

export class EventBus {
  private readonly subs: { [T in Topic]: Set<Subscriber<T>> } = {
    transition: new Set(),
    progress: new Set(),
    notification: new Set(),
    log: new Set(),
  };

  subscribe<T extends Topic>(topic: T, handler: Handler<T>, opts: { queueLimit?: number } = {}): () => void {
    const sub: Subscriber<T> = { handler, queue: [], draining: false, dropped: 0, limit: opts.queueLimit ?? 1000 };
    (this.subs[topic] as Set<Subscriber<T>>).add(sub);
    return () => (this.subs[topic] as Set<Subscriber<T>>).delete(sub);
  }

  publish<T extends Topic>(topic: T, message: BusTopics[T]): void {
    for (const sub of this.subs[topic] as Set<Subscriber<T>>) {
      sub.queue.push(message);
      if (sub.queue.length > sub.limit) {
        sub.queue.shift();
        sub.dropped++;
      }
      if (!sub.draining) {
        sub.draining = true;
        setImmediate(() => void this.drain(sub));
      }
    }
  }

  subscriberCount(topic: Topic): number {
    return this.subs[topic].size;
  }

  private async drain<T extends Topic>(sub: Subscriber<T>): Promise<void> {
    while (sub.queue.length > 0) {
      const message = sub.queue.shift() as BusTopics[T];
      const dropped = sub.dropped;
      sub.dropped = 0;
      try {
        await sub.handler(message, { dropped });
      } catch {
        // A failing subscriber is its own problem; the bus and the machine go on.
      }
    }
    sub.draining = false;
  }
}
