/**
 * Progress events for a download, throttled so a fast transfer does not flood Socket.IO:
 * at most one every `intervalMs`, or whenever another `stepFraction` of the total arrived.
 * Pure: time is passed in (monotonic milliseconds from the Clock port).
 */
export interface ProgressEvent {
  /** Bytes of the target held so far (including bytes resumed from an earlier partial). */
  bytes: number;
  total: number;
  /** Average rate of this download call, bytes per second. */
  rateBps: number;
  /** Estimated time left at that rate; null while the rate is unknown. */
  etaMs: number | null;
}

export interface ProgressThrottle {
  /** An event to emit now, or null when the previous one is recent enough. */
  update(bytes: number, nowMs: number): ProgressEvent | null;
  /** The last event, always emitted (100 % at completion). */
  final(bytes: number, nowMs: number): ProgressEvent;
}

export interface ProgressThrottleOptions {
  total: number;
  startMs: number;
  /** Bytes already on disk when this call began: they do not count towards the rate. */
  startBytes: number;
  intervalMs?: number;
  stepFraction?: number;
}

export function createProgressThrottle(options: ProgressThrottleOptions): ProgressThrottle {
  const intervalMs = options.intervalMs ?? 250;
  const step = Math.max(1, Math.floor(options.total * (options.stepFraction ?? 0.01)));
  let lastMs = Number.NEGATIVE_INFINITY;
  let lastBytes = Number.NEGATIVE_INFINITY;
  let baseBytes = options.startBytes;

  function event(bytes: number, nowMs: number): ProgressEvent {
    // A restart from zero (server ignored Range) moves the base down so the rate stays sane.
    if (bytes < baseBytes) baseBytes = 0;
    const elapsed = nowMs - options.startMs;
    const rateBps = elapsed > 0 ? ((bytes - baseBytes) * 1000) / elapsed : 0;
    const etaMs = rateBps > 0 ? Math.round(((options.total - bytes) * 1000) / rateBps) : null;
    lastMs = nowMs;
    lastBytes = bytes;
    return { bytes, total: options.total, rateBps: Math.round(rateBps), etaMs };
  }

  return {
    update(bytes, nowMs) {
      if (nowMs - lastMs < intervalMs && Math.abs(bytes - lastBytes) < step) return null;
      return event(bytes, nowMs);
    },
    final(bytes, nowMs) {
      return event(bytes, nowMs);
    },
  };
}
