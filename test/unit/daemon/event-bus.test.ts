import { describe, expect, it } from 'vitest';
import { EventBus, type ProgressMessage } from '../../../src/daemon/event-bus.js';

const progress = (bytes: number): ProgressMessage => ({ product: 'robot-ai', runId: 'r', step: 'download', bytes, total: 100, rateBps: null, etaMs: null });
const tick = () => new Promise((r) => setImmediate(r));

describe('the event bus', () => {
  it('delivers in order to every subscriber of a topic, and only that topic', async () => {
    const bus = new EventBus();
    const a: number[] = [];
    const b: number[] = [];
    bus.subscribe('progress', (m) => void a.push(m.bytes));
    bus.subscribe('progress', (m) => void b.push(m.bytes));
    bus.subscribe('log', () => {
      throw new Error('not for this topic');
    });
    for (let i = 0; i < 5; i++) bus.publish('progress', progress(i));
    await tick();
    expect(a).toEqual([0, 1, 2, 3, 4]);
    expect(b).toEqual([0, 1, 2, 3, 4]);
  });

  it('never makes the publisher wait for a slow subscriber', async () => {
    const bus = new EventBus();
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => (release = r));
    const seen: number[] = [];
    bus.subscribe('progress', async (m) => {
      await gate;
      seen.push(m.bytes);
    });
    // publish is synchronous and returns at once even though the subscriber is stuck.
    for (let i = 0; i < 10; i++) bus.publish('progress', progress(i));
    await tick();
    expect(seen).toEqual([]);
    release();
    await gate;
    for (let i = 0; i < 20; i++) await tick();
    expect(seen).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('drops the oldest messages of a subscriber that falls behind, and tells it how many', async () => {
    const bus = new EventBus();
    const got: Array<{ bytes: number; dropped: number }> = [];
    bus.subscribe('progress', (m, meta) => void got.push({ bytes: m.bytes, dropped: meta.dropped }), { queueLimit: 3 });
    for (let i = 0; i < 10; i++) bus.publish('progress', progress(i));
    await tick();
    expect(got.map((g) => g.bytes)).toEqual([7, 8, 9]);
    expect(got[0]!.dropped).toBe(7);
  });

  it('keeps delivering to others when one subscriber throws', async () => {
    const bus = new EventBus();
    const ok: number[] = [];
    bus.subscribe('progress', () => {
      throw new Error('broken dashboard');
    });
    bus.subscribe('progress', (m) => void ok.push(m.bytes));
    bus.publish('progress', progress(1));
    bus.publish('progress', progress(2));
    await tick();
    expect(ok).toEqual([1, 2]);
  });

  it('stops delivering after unsubscribe', async () => {
    const bus = new EventBus();
    const seen: number[] = [];
    const off = bus.subscribe('progress', (m) => void seen.push(m.bytes));
    off();
    bus.publish('progress', progress(1));
    await tick();
    expect(seen).toEqual([]);
    expect(bus.subscriberCount('progress')).toBe(0);
  });
});
