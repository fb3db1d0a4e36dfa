/**
 * `ota-repo mirror-assets`: the targets a robot fetches from a mirror (`repository.mirrorUrl`,
 * src/trust/mirror.ts) copied into one flat folder under their asset names, as a GitHub release
 * holds them: `robot-ai/robot-ai-2.1.0.tar.gz` → `robot-ai-2.1.0.tar.gz`. Packages, deltas and
 * tree indexes are written; manifests and TUF metadata are not (robots always fetch those from the
 * server). Two targets with one asset name are refused, since a flat layout cannot hold both.
 * The files are the signed bytes: robots hold whatever the mirror sends to the signed length and
 * SHA-256.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { OtaError } from '../core/errors.js';
import { mirrorAssetName } from '../trust/mirror.js';

export interface MirrorAsset {
  /** The target's name in the signed metadata. */
  target: string;
  /** Its name on the mirror. */
  asset: string;
  length: number;
  sha256: string;
  /** Where it was written. */
  file: string;
}

export interface MirrorAssetsInput {
  repoDir: string;
  outDir: string;
  targets: ReadonlyArray<{ name: string; length: number; sha256: string }>;
  /** Only this product's targets (`<product>/…`). */
  product?: string;
}

export function isMirrored(name: string): boolean {
  return !name.endsWith('.manifest.json');
}

export async function writeMirrorAssets(input: MirrorAssetsInput): Promise<MirrorAsset[]> {
  const chosen = input.targets.filter((t) => isMirrored(t.name) && (input.product === undefined || t.name.startsWith(`${input.product}/`)));
  const byAsset = new Map<string, string>();
  for (const t of chosen) {
    const asset = mirrorAssetName(t.name);
    const other = byAsset.get(asset);
    if (other !== undefined) {
      throw new OtaError('CONFIG_INVALID', `targets ${other} and ${t.name} would both be the mirror asset ${asset}: a flat mirror cannot hold both (rename one product's files)`, { details: { asset, targets: [other, t.name] } });
    }
    byAsset.set(asset, t.name);
  }
  await fs.mkdir(input.outDir, { recursive: true });
  const out: MirrorAsset[] = [];
  for (const t of [...chosen].sort((a, b) => a.name.localeCompare(b.name))) {
    const { dir, base } = path.posix.parse(t.name);
    const stored = path.join(input.repoDir, 'targets', ...dir.split('/').filter(Boolean), `${t.sha256}.${base}`);
    const asset = mirrorAssetName(t.name);
    const file = path.join(input.outDir, asset);
    const tmp = `${file}.tmp-${process.pid}`;
    await fs.copyFile(stored, tmp);
    await fs.rename(tmp, file);
    out.push({ target: t.name, asset, length: t.length, sha256: t.sha256, file });
  }
  return out;
}

/** The `gh` command that uploads the assets to a release (created first when missing). */
export function githubUploadCommands(assets: readonly MirrorAsset[], repo: string, tag: string): string[] {
  const q = (s: string): string => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);
  return [
    `gh release view ${q(tag)} --repo ${q(repo)} >/dev/null 2>&1 || gh release create ${q(tag)} --repo ${q(repo)} --title ${q(tag)} --notes ${q('otad targets mirror')}`,
    `gh release upload ${q(tag)} --repo ${q(repo)} --clobber ${assets.map((a) => q(a.file)).join(' ')}`,
  ];
}
