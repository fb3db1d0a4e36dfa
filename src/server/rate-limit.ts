/**
 * A token bucket per source address: `burst` requests at once, refilled at `perSecond`. Pure apart
 * from the clock it is handed. Buckets live in this process only, which is right for a limit: each
 * server behind a load balancer limits what reaches it. Idle buckets are dropped so a flood of
 * addresses cannot grow the map without bound.
 */
export interface RateLimitOptions {
  perSecond: number;
  burst: number;
  /** Most addresses tracked at once; the least recently seen are dropped first. */
  maxSources?: number;
}

export type RateDecision = { allowed: true } | { allowed: false; retryAfterMs: number; firstRefusal: boolean };

interface Bucket {
  tokens: number;
  at: number;
  refusing: boolean;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly maxSources: number;

  constructor(private readonly options: RateLimitOptions) {
    this.maxSources = options.maxSources ?? 100_000;
  }

  take(source: string, now: number): RateDecision {
    let bucket = this.buckets.get(source);
    if (bucket === undefined) {
      bucket = { tokens: this.options.burst, at: now, refusing: false };
      if (this.buckets.size >= this.maxSources) this.buckets.delete(this.buckets.keys().next().value!);
    } else {
      this.buckets.delete(source);
      bucket.tokens = Math.min(this.options.burst, bucket.tokens + (Math.max(0, now - bucket.at) / 1000) * this.options.perSecond);
      bucket.at = now;
    }
    // Re-inserted on every use: the map's order is least recently seen first.
    this.buckets.set(source, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      bucket.refusing = false;
      return { allowed: true };
    }
    const firstRefusal = !bucket.refusing;
    bucket.refusing = true;
    return { allowed: false, retryAfterMs: Math.ceil(((1 - bucket.tokens) / this.options.perSecond) * 1000), firstRefusal };
  }
}
