import { describe, expect, it } from 'vitest';
import { forEachPooled } from '../../../src/core/pool.js';

const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('forEachPooled', () => {
  it('runs every item, at most `concurrency` at a time, each worker with its own index', async () => {
    let running = 0;
    let most = 0;
    const seen: Array<[number, number]> = [];
    await forEachPooled([1, 2, 3, 4, 5, 6, 7], 3, async (item, worker) => {
      running += 1;
      most = Math.max(most, running);
      await tick(item % 3);
      seen.push([item, worker]);
      running -= 1;
    });
    expect(seen.map(([item]) => item).sort()).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(most).toBe(3);
    expect(new Set(seen.map(([, worker]) => worker))).toEqual(new Set([0, 1, 2]));
  });

  it('on the first failure starts no more items, lets those in flight finish, then throws that failure', async () => {
    const started: number[] = [];
    const finished: number[] = [];
    const failure = new Error('item 2 failed');
    const outcome = forEachPooled([1, 2, 3, 4, 5, 6], 3, async (item) => {
      started.push(item);
      if (item === 2) throw failure;
      await tick(20);
      finished.push(item);
    });
    await expect(outcome).rejects.toBe(failure);
    // Items 1 and 3 were in flight when 2 failed: both ran to the end before the rejection.
    expect(finished.sort()).toEqual([1, 3]);
    expect(started.sort()).toEqual([1, 2, 3]);
  });

  it('does nothing for no items', async () => {
    await forEachPooled([], 4, async () => {
      throw new Error('never called');
    });
  });
});
