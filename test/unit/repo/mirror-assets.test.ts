import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { githubUploadCommands, writeMirrorAssets } from '../../../src/repo/mirror-assets.js';
import { mirrorAssetUrl } from '../../../src/trust/mirror.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A repository folder holding targets as ota-repo stores them: targets/<dir>/<sha256>.<base>. */
function repoWith(files: Record<string, string>): { repoDir: string; targets: Array<{ name: string; length: number; sha256: string }> } {
  const repoDir = mkdtempSync(join(tmpdir(), 'otad-mirror-assets-'));
  dirs.push(repoDir);
  const targets = Object.entries(files).map(([name, text]) => {
    const sha256 = createHash('sha256').update(text).digest('hex');
    const slash = name.lastIndexOf('/');
    const dir = join(repoDir, 'targets', name.slice(0, slash));
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `${sha256}.${name.slice(slash + 1)}`), text);
    return { name, length: Buffer.byteLength(text), sha256 };
  });
  return { repoDir, targets };
}

describe('ota-repo mirror-assets', () => {
  it('writes packages, deltas and indexes under their base names, leaves manifests out, and the robot asks for the same names', async () => {
    const { repoDir, targets } = repoWith({
      'robot-ai/robot-ai-1.1.0.tar.gz': 'package',
      'robot-ai/robot-ai-1.0.0-to-1.1.0.delta.tar.gz': 'delta',
      'robot-ai/robot-ai-1.1.0.index.json': '{}',
      'robot-ai/robot-ai-1.1.0.manifest.json': '{"m":1}',
      'nav/nav-3.0.0.tar.gz': 'other product',
    });
    const out = join(repoDir, 'out');
    const assets = await writeMirrorAssets({ repoDir, outDir: out, targets, product: 'robot-ai' });
    expect(assets.map((a) => a.asset).sort()).toEqual(['robot-ai-1.0.0-to-1.1.0.delta.tar.gz', 'robot-ai-1.1.0.index.json', 'robot-ai-1.1.0.tar.gz']);
    expect(readdirSync(out).sort()).toEqual(assets.map((a) => a.asset).sort());
    expect(readFileSync(join(out, 'robot-ai-1.1.0.tar.gz'), 'utf8')).toBe('package');
    expect(mirrorAssetUrl('https://github.com/acme/robot-ai/releases/download/ota', 'robot-ai/robot-ai-1.1.0.tar.gz')).toBe('https://github.com/acme/robot-ai/releases/download/ota/robot-ai-1.1.0.tar.gz');
    const cmds = githubUploadCommands(assets, 'acme/robot-ai', 'ota');
    expect(cmds[0]).toContain('gh release create ota --repo acme/robot-ai');
    expect(cmds[1]).toBe(`gh release upload ota --repo acme/robot-ai --clobber ${assets.map((a) => a.file).join(' ')}`);
  });

  it('refuses two targets that would share one asset name', async () => {
    const { repoDir, targets } = repoWith({ 'a/common-1.0.0.tar.gz': 'one', 'b/common-1.0.0.tar.gz': 'two' });
    await expect(writeMirrorAssets({ repoDir, outDir: join(repoDir, 'out'), targets })).rejects.toMatchObject({ code: 'CONFIG_INVALID', message: expect.stringContaining('would both be the mirror asset common-1.0.0.tar.gz') });
  });
});
