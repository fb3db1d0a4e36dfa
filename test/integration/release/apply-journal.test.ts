import * as fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { createApplyJournal, type ApplyJournal } from '../../../src/release/journal.js';

let dir: string;
let journal: ApplyJournal;
const clock = new ManualClock('2025-01-01T00:00:00Z');

beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'otad-journal-'));
  journal = createApplyJournal({ dir: path.join(dir, 'journal'), product: 'robot-ai', clock, logger: silentLogger });
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe('apply journal', () => {
  it('records a run through its phases and reads back what was written', async () => {
    expect(await journal.read()).toBeNull();
    await journal.begin({ runId: 'run-1', from: '1.0.0', to: '2.0.0' });
    clock.advance(1000);
    await journal.write('services-stopped');
    await journal.write('switched');
    expect(await journal.read()).toEqual({
      schema: 1,
      product: 'robot-ai',
      runId: 'run-1',
      from: '1.0.0',
      to: '2.0.0',
      phase: 'switched',
      updatedAt: clock.now(),
    });
    expect((await fs.readdir(path.join(dir, 'journal'))).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  it('allows a phase to be written twice (a re-run step) but never backwards', async () => {
    await journal.begin({ runId: 'run-1', from: '1.0.0', to: '2.0.0' });
    await journal.write('switched');
    await journal.write('switched');
    await expect(journal.write('prepared')).rejects.toMatchObject({ code: 'INTERNAL' });
  });

  it('refuses to record a phase without a run', async () => {
    await expect(journal.write('switched')).rejects.toMatchObject({ code: 'INTERNAL' });
  });

  it('clears the journal, and clearing twice is harmless', async () => {
    await journal.begin({ runId: 'run-1', from: null, to: '2.0.0' });
    await journal.clear();
    await journal.clear();
    expect(await journal.read()).toBeNull();
  });

  it('reports a damaged journal file instead of guessing', async () => {
    await journal.begin({ runId: 'run-1', from: null, to: '2.0.0' });
    await fs.writeFile(journal.file, '{"schema":1,"phase":"sideways"}');
    await expect(journal.read()).rejects.toMatchObject({ code: 'STORE_FAILED' });
  });
});
