/**
 * A scriptable UpdateRepository for tests of the steps and the daemon: releases are plain data,
 * failures are queued per operation, and slowness is a promise the test resolves. It keeps the
 * real contract: a failed download leaves nothing at dest.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import semver from 'semver';
import type { TargetRef } from '../../machines/types.js';
import { OtaError, type ErrorCode } from '../core/errors.js';
import type { Manifest } from '../manifest/schema.js';
import type { DownloadOptions, LatestReleaseOptions, UpdateRepository, VerifiedRelease } from './update-repository.js';

export type FakeOperation = 'refresh' | 'latestRelease' | 'downloadTarget' | 'verifyFile';

export interface FakeRelease {
  manifest: Manifest;
  /** The package bytes downloadTarget writes. */
  packageBytes: Buffer;
}

export interface FakeRepository extends UpdateRepository {
  /** Publish a release: its package target is derived from the bytes. */
  addRelease(manifest: Omit<Manifest, 'package'> & { package?: Partial<Manifest['package']> }, packageBytes: Buffer): VerifiedRelease;
  /** The next call(s) of `op` throw an OtaError with this code. */
  failNext(op: FakeOperation, code: ErrorCode, times?: number, message?: string): void;
  /** Calls of `op` wait until the returned function is called (or their signal aborts). */
  hold(op: FakeOperation): () => void;
  /** Downloads write these bytes instead of the real package (a tampered mirror). */
  tamper(name: string, bytes: Buffer): void;
  readonly calls: Array<{ op: FakeOperation; args: unknown[] }>;
}

export function createFakeRepository(): FakeRepository {
  const releases: FakeRelease[] = [];
  const failures = new Map<FakeOperation, Array<{ code: ErrorCode; message: string }>>();
  const holds = new Map<FakeOperation, Promise<void>>();
  const tampered = new Map<string, Buffer>();
  const calls: Array<{ op: FakeOperation; args: unknown[] }> = [];

  async function enter(op: FakeOperation, args: unknown[], signal?: AbortSignal): Promise<void> {
    calls.push({ op, args });
    const held = holds.get(op);
    if (held !== undefined) {
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => reject(new OtaError('CANCELLED', `${op} was cancelled`));
        if (signal?.aborted === true) return onAbort();
        signal?.addEventListener('abort', onAbort, { once: true });
        void held.then(() => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        });
      });
    }
    const queue = failures.get(op);
    const failure = queue?.shift();
    if (failure !== undefined) throw new OtaError(failure.code, failure.message, { details: { fake: true, op } });
  }

  function manifestTarget(manifest: Manifest): TargetRef {
    const bytes = Buffer.from(JSON.stringify(manifest));
    return { name: `${manifest.product}/${manifest.product}-${manifest.version}.manifest.json`, length: bytes.length, sha256: sha(bytes) };
  }

  function findPackage(name: string): FakeRelease | undefined {
    return releases.find((r) => r.manifest.package.target === name);
  }

  return {
    calls,
    addRelease(input, packageBytes) {
      const manifest: Manifest = {
        ...input,
        package: {
          target: input.package?.target ?? `${input.product}/${input.product}-${input.version}.tar.gz`,
          length: input.package?.length ?? packageBytes.length,
          sha256: input.package?.sha256 ?? sha(packageBytes),
        },
      } as Manifest;
      releases.push({ manifest, packageBytes });
      return { manifest, manifestTarget: manifestTarget(manifest) };
    },
    failNext(op, code, times = 1, message = `fake ${op} failure: ${code}`) {
      const queue = failures.get(op) ?? [];
      for (let i = 0; i < times; i += 1) queue.push({ code, message });
      failures.set(op, queue);
    },
    hold(op) {
      let release!: () => void;
      holds.set(op, new Promise<void>((resolve) => (release = resolve)));
      return () => {
        holds.delete(op);
        release();
      };
    },
    tamper(name, bytes) {
      tampered.set(name, bytes);
    },
    async refresh(signal) {
      await enter('refresh', [], signal);
    },
    async latestRelease(product: string, options: LatestReleaseOptions = {}) {
      await enter('latestRelease', [product, options], options.signal);
      const channel = options.channel ?? 'stable';
      const matching = releases
        .filter((r) => r.manifest.product === product && r.manifest.channel === channel)
        .filter((r) => options.allowPrerelease === true || semver.prerelease(r.manifest.version) === null)
        .sort((a, b) => semver.compare(b.manifest.version, a.manifest.version));
      for (const r of matching) {
        const refusal = options.accept?.(r.manifest) ?? null;
        if (refusal !== null) {
          options.onPassedOver?.({ target: manifestTarget(r.manifest).name, version: r.manifest.version, error: refusal });
          continue;
        }
        return { manifest: r.manifest, manifestTarget: manifestTarget(r.manifest) };
      }
      return null;
    },
    async downloadTarget(target: TargetRef, dest: string, options: DownloadOptions = {}) {
      await enter('downloadTarget', [target, dest], options.signal);
      const release = findPackage(target.name);
      if (release === undefined) throw new OtaError('TRUST_TARGET_UNKNOWN', `target ${target.name} is not in the fake repository`);
      const bytes = tampered.get(target.name) ?? release.packageBytes;
      if (bytes.length > target.length) throw new OtaError('TRUST_LENGTH_MISMATCH', `target ${target.name} is longer than its signed ${target.length} bytes`);
      if (sha(bytes) !== target.sha256) throw new OtaError('TRUST_HASH_MISMATCH', `target ${target.name} does not match its signed SHA-256`);
      await fs.writeFile(dest, bytes);
      options.onProgress?.({ bytes: bytes.length, total: target.length });
      return { path: dest };
    },
    async verifyFile(target: TargetRef, file: string) {
      await enter('verifyFile', [target, file]);
      const bytes = await fs.readFile(file);
      if (bytes.length !== target.length) throw new OtaError('TRUST_LENGTH_MISMATCH', `${file} is ${bytes.length} bytes, signed ${target.length}`);
      if (sha(bytes) !== target.sha256) throw new OtaError('TRUST_HASH_MISMATCH', `${file} does not match the signed SHA-256 of ${target.name}`);
    },
  };
}

function sha(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}
