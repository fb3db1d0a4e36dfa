import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createFakeRepository } from '../../../src/trust/fake-repository.js';

const release = (version: string) => ({
  schema: '1.0',
  product: 'robot-ai',
  version,
  channel: 'stable',
  releasedAt: '2026-03-01T00:00:00Z',
  notes: '',
});

describe('fake repository', () => {
  it('answers the newest release and fails on demand with the scripted code', async () => {
    const fake = createFakeRepository();
    fake.addRelease(release('1.0.0'), Buffer.from('one'));
    fake.addRelease(release('1.1.0'), Buffer.from('two'));
    expect((await fake.latestRelease('robot-ai'))?.manifest.version).toBe('1.1.0');
    fake.failNext('refresh', 'NETWORK_OFFLINE', 2);
    await expect(fake.refresh()).rejects.toMatchObject({ code: 'NETWORK_OFFLINE' });
    await expect(fake.refresh()).rejects.toMatchObject({ code: 'NETWORK_OFFLINE' });
    await expect(fake.refresh()).resolves.toBeUndefined();
  });

  it('holds a call until released, and a tampered package fails the hash check leaving nothing', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'otad-fake-'));
    try {
      const fake = createFakeRepository();
      const { manifest } = fake.addRelease(release('1.0.0'), Buffer.from('package'));
      const ref = { name: manifest.package.target, length: manifest.package.length, sha256: manifest.package.sha256 };
      const release1 = fake.hold('downloadTarget');
      let done = false;
      const pending = fake.downloadTarget(ref, path.join(dir, 'a')).then(() => (done = true));
      await new Promise((r) => setImmediate(r));
      expect(done).toBe(false);
      release1();
      await pending;
      expect(await fs.readFile(path.join(dir, 'a'), 'utf8')).toBe('package');
      fake.tamper(ref.name, Buffer.from('packagX'));
      await expect(fake.downloadTarget(ref, path.join(dir, 'b'))).rejects.toMatchObject({ code: 'TRUST_HASH_MISMATCH' });
      expect(await fs.readdir(dir)).toEqual(['a']);
      const controller = new AbortController();
      fake.hold('refresh');
      const aborted = fake.refresh(controller.signal);
      controller.abort();
      await expect(aborted).rejects.toMatchObject({ code: 'CANCELLED' });
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
