import { describe, expect, it } from 'vitest';
import { createRng } from '../../../src/core/rng.js';
import { ReadRing } from '../../../src/net/lean-get.js';

const overlaps = (a: Buffer, b: Buffer): boolean =>
  a.buffer === b.buffer && a.byteOffset < b.byteOffset + b.length && b.byteOffset < a.byteOffset + a.length;

/**
 * Drives a ring the way lean-get does: reads land where next() says (more may land while the
 * caller holds a chunk, as TLS does after a pause), views are queued, the caller takes them one
 * at a time and gives the last back when it asks for the next. Every byte is numbered, so a byte
 * overwritten before the caller is done with it shows as a wrong number.
 */
function simulate(seed: number, steps: number): { reads: number; spareReads: number; wraps: number } {
  const random = createRng(seed);
  const ring = new ReadRing(64 * 1024, 16 * 1024, 4 * 1024);
  const queue: Buffer[] = [];
  let held: { view: Buffer; copy: Buffer } | null = null;
  let written = 0;
  let taken = 0;
  let reads = 0;
  let spareReads = 0;
  let wraps = 0;
  let lastOffset = -1;
  let region = ring.next();
  for (let step = 0; step < steps; step++) {
    const roll = random();
    if (roll < 0.55) {
      // A read into the region next() gave, of any length up to it.
      for (const v of queue) if (overlaps(region, v)) throw new Error(`seed ${seed} step ${step}: read over a queued view`);
      if (held !== null && overlaps(region, held.view)) throw new Error(`seed ${seed} step ${step}: read over the held chunk`);
      const n = 1 + Math.floor(random() * region.length);
      for (let i = 0; i < n; i++) region[i] = (written + i) & 0xff;
      written += n;
      reads += 1;
      if (region.buffer !== ring.buffer.buffer) spareReads += 1;
      else if (region.byteOffset < lastOffset) wraps += 1;
      if (region.buffer === ring.buffer.buffer) lastOffset = region.byteOffset;
      const view = ring.landed(region, n);
      const last = queue[queue.length - 1];
      if (last !== undefined && last.buffer === view.buffer && last.byteOffset + last.length === view.byteOffset) {
        queue[queue.length - 1] = Buffer.from(last.buffer, last.byteOffset, last.length + view.length);
      } else {
        queue.push(view);
      }
      region = ring.next();
    } else if (queue.length > 0) {
      // The caller asks for the next chunk: the one it held is given back.
      if (held !== null && !held.view.equals(held.copy)) throw new Error(`seed ${seed} step ${step}: held chunk changed`);
      ring.release(queue);
      const view = queue.shift()!;
      for (let i = 0; i < view.length; i++) {
        if (view[i] !== ((taken + i) & 0xff)) throw new Error(`seed ${seed} step ${step}: byte ${taken + i} was overwritten`);
      }
      taken += view.length;
      held = { view, copy: Buffer.from(view) };
    }
  }
  return { reads, spareReads, wraps };
}

describe('ReadRing', () => {
  it('never gives a read room over a queued or held view, whatever the order of reads and takes', () => {
    let wraps = 0;
    let spareReads = 0;
    for (let seed = 1; seed <= 200; seed++) {
      const result = simulate(seed, 400);
      wraps += result.wraps;
      spareReads += result.spareReads;
    }
    // The runs went round the ring and filled it, so both paths were taken.
    expect(wraps).toBeGreaterThan(100);
    expect(spareReads).toBeGreaterThan(0);
  });

  it('reads into the ring, not the spare, when the caller keeps up', () => {
    const ring = new ReadRing(64 * 1024, 16 * 1024, 4 * 1024);
    const queue: Buffer[] = [];
    for (let i = 0; i < 100; i++) {
      const region = ring.next();
      expect(region.buffer).toBe(ring.buffer.buffer);
      expect(region.length).toBeLessThanOrEqual(16 * 1024);
      queue.push(ring.landed(region, region.length));
      ring.release(queue);
      queue.shift();
    }
  });

  it('copies what lands in the spare, so the spare can be read into again at once', () => {
    const ring = new ReadRing(32 * 1024, 16 * 1024, 4 * 1024);
    const queue: Buffer[] = [];
    for (let i = 0; i < 2; i++) queue.push(ring.landed(ring.next(), 16 * 1024));
    const region = ring.next();
    expect(region.buffer).not.toBe(ring.buffer.buffer);
    region.fill(7);
    const view = ring.landed(region, 100);
    region.fill(8);
    expect(view.every((b) => b === 7)).toBe(true);
    expect(ring.room()).toBe(0);
  });
});
