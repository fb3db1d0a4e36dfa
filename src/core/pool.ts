/**
 * A few workers taking items from one list: what the staging passes use to overlap file I/O on
 * the thread pool. Why not `Promise.all` over the workers: it rejects at the first failure while
 * the other workers are still creating files, so whoever then removes the tree (the fallback from
 * a delta to the full package, the clean-up of a failed staging) races them and fails with
 * ENOTEMPTY. Here the first failure stops the handing out of items, every worker finishes the item
 * it holds, and only then is the first error thrown. `worker` (0 to concurrency - 1) lets a caller
 * keep a buffer per worker.
 */
export async function forEachPooled<T>(items: readonly T[], concurrency: number, fn: (item: T, worker: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | null = null;
  async function worker(id: number): Promise<void> {
    while (failure === null && next < items.length) {
      const item = items[next++]!;
      try {
        await fn(item, id);
      } catch (error) {
        failure ??= { error };
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, (_, id) => worker(id)));
  if (failure !== null) throw (failure as { error: unknown }).error;
}
