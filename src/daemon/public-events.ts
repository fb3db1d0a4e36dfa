/**
 * The events an edge may dispatch: the allow-list check with its error, and the machine event each
 * request becomes (a new run id for CHECK_NOW and ROLLBACK, the next install slot for SCHEDULE_3AM).
 */
import { randomBytes } from 'node:crypto';
import { CHOICES, PUBLIC_EVENTS, type PublicEventType, type UpdateEvent } from '../../machines/types.js';
import { OtaError } from '../core/errors.js';
import type { DispatchRequest } from './control.js';

/** The request's event type, or API_INVALID_EVENT naming the two choices and the other events. */
export function publicEventType(type: unknown): PublicEventType {
  if ((PUBLIC_EVENTS as readonly unknown[]).includes(type)) return type as PublicEventType;
  throw new OtaError(
    'API_INVALID_EVENT',
    `"${String(type)}" is not an event otad accepts; the choices are ${CHOICES.join(' and ')}, and the other events are ${PUBLIC_EVENTS.filter((e) => !(CHOICES as readonly string[]).includes(e)).join(', ')}`,
    { details: { event: type, choices: [...CHOICES], allowed: [...PUBLIC_EVENTS] } },
  );
}

export function buildPublicEvent(type: PublicEventType, req: Pick<DispatchRequest, 'source' | 'reason' | 'markBad' | 'actor'>, now: number, nextInstallSlot: () => number): UpdateEvent {
  const base = { now, source: req.source };
  switch (type) {
    case 'CHECK_NOW':
      return { type, ...base, runId: newRunId(now) };
    case 'ROLLBACK':
      return {
        type,
        ...base,
        runId: newRunId(now),
        ...(req.reason ? { reason: req.reason } : {}),
        ...(req.markBad ? { markBad: true } : {}),
        ...(req.actor ? { actor: req.actor } : {}),
      };
    case 'SCHEDULE_3AM':
      return { type, ...base, at: nextInstallSlot() };
    default:
      return { type, ...base };
  }
}

/** `20261202T031500Z-a1b2c3`: sortable by start time, unique per device. */
export function newRunId(now: number): string {
  return `${new Date(now).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-${randomBytes(3).toString('hex')}`;
}
