/**
 * One update of the crash world's product through a real otad's REST API: CHECK_NOW, then wait
 * until the saved state is idle with that run settled; and the run's "release staged" log lines
 * (how it was staged: package or delta).
 */
import { readFileSync } from 'node:fs';
import { PRODUCT, type CrashWorld, type RunningDaemon } from './crash-harness.js';
import { readSaved, waitUntil } from './otad-process.js';

export async function checkNowAndSettle(w: CrashWorld, daemon: RunningDaemon): Promise<{ runId: string; outcome: unknown }> {
  const { runId } = await daemon.api.request<{ runId: string }>('POST', '/api/v1/events', { product: PRODUCT, type: 'CHECK_NOW' });
  const settled = await waitUntil(() => {
    const s = readSaved(w.sandbox.dbPath);
    return s?.state === 'idle' && s.runId === runId && s.context.lastOutcome !== null ? s : null;
  }, { timeoutMs: 90_000, intervalMs: 50, what: `run ${runId} to settle` }).catch((error: unknown) => {
    throw new Error(`${(error as Error).message}\n--- otad log tail ---\n${w.logTail(30)}`);
  });
  return { runId, outcome: settled.context.lastOutcome };
}

export function stagedLines(w: CrashWorld, runId: string): Array<Record<string, unknown>> {
  return readFileSync(w.sandbox.logPath, 'utf8')
    .split('\n')
    .filter((l) => l.includes(`"runId":"${runId}"`) && l.includes('"release staged"'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}
