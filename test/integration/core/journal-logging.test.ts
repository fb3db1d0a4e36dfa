/**
 * otad's stdout under journald: the built entry point, with stdout on a file whose device:inode
 * JOURNAL_STREAM names (as systemd does for a service's stream), then on a real systemd-journald
 * in a private mount namespace.
 */
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { REPO_ROOT } from '../../support/otad-process.js';

const OTAD = join(REPO_ROOT, 'dist/src/cli/otad.js');
const built = existsSync(OTAD);

function sandbox(): { dir: string; config: string; root: string } {
  const dir = mkdtempSync(join(tmpdir(), 'otad-journal-'));
  const root = join(dir, 'root.json'); // absent on purpose: otad logs an error about it at start
  const config = join(dir, 'config.yaml');
  writeFileSync(config, YAML.stringify({
    environment: 'test',
    paths: { stateDir: join(dir, 'state'), trustedRoot: root, inhibitFile: join(dir, 'inhibit') },
    logging: { level: 'info' },
    api: { enabled: false },
    products: [{ name: 'robot-ai', installPath: join(dir, 'opt', 'robot-ai') }],
  }));
  return { dir, config, root };
}

/** Runs otad with stdout and stderr on `out` until it is ready, then stops it with SIGTERM. */
async function runWithStdoutOn(out: string, config: string, env: Record<string, string>): Promise<string> {
  const fd = openSync(out, 'a');
  const child = spawn(process.execPath, [OTAD, '--config', config], { stdio: ['ignore', fd, fd], env: { ...process.env, ...env } });
  closeSync(fd);
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  for (let i = 0; i < 3000 && !/otad ready/.test(readFileSync(out, 'utf8')) && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 20));
  child.kill('SIGTERM');
  expect(await exited).toBe(0);
  return readFileSync(out, 'utf8');
}

describe('otad logging under journald', () => {
  const dirs: string[] = [];
  afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

  it.skipIf(!built)('writes priority-prefixed text lines when JOURNAL_STREAM names its stdout', async () => {
    const s = sandbox();
    dirs.push(s.dir);
    const out = join(s.dir, 'stdout');
    writeFileSync(out, '');
    const st = statSync(out);
    const text = await runWithStdoutOn(out, s.config, { JOURNAL_STREAM: `${st.dev}:${st.ino}` });
    const lines = text.trimEnd().split('\n');
    for (const l of lines) expect(l, 'every line has a priority prefix and is text').toMatch(/^<[3467]>[^<{]/);
    const error = `golden trusted root ${s.root} does not exist; install the repository's root.json there (paths.trustedRoot)`;
    expect(lines).toContain(
      `<3>no usable trusted root: no update can be checked until it is fixed error={"code":"TRUST_ROOT_MISSING","category":"trust","retryable":false,"message":${JSON.stringify(error)},"details":{"path":${JSON.stringify(s.root)}}} path=${s.root}`,
    );
    expect(lines).toContain('<6>started the lifecycle product=robot-ai state=idle savedState=null action=fresh reason="no saved state"');
    expect(lines.slice(-2)).toEqual(['<6>otad stopping reason=SIGTERM', '<6>otad stopped cleanly']);
  });

  it.skipIf(!built)('keeps JSON lines when JOURNAL_STREAM names another stream (a child of a service whose stdout was redirected)', async () => {
    const s = sandbox();
    dirs.push(s.dir);
    const out = join(s.dir, 'stdout');
    const other = join(s.dir, 'other');
    writeFileSync(out, '');
    writeFileSync(other, '');
    const st = statSync(other);
    const text = await runWithStdoutOn(out, s.config, { JOURNAL_STREAM: `${st.dev}:${st.ino}` });
    const first = JSON.parse(text.split('\n')[0]!) as { message: string; level: string };
    expect(first).toMatchObject({ message: 'otad starting', level: 'info' });
  });

  const journald = '/lib/systemd/systemd-journald';
  const canRun =
    process.getuid?.() === 0 && existsSync(journald) && spawnSync('which', ['unshare', 'systemd-cat', 'journalctl']).status === 0;
  it.skipIf(!built)('under a real systemd-journald, journalctl -p err shows the errors and only them', (ctx) => {
    if (!canRun) return ctx.skip('needs root, unshare, systemd-cat, journalctl and /lib/systemd/systemd-journald');
    const s = sandbox();
    dirs.push(s.dir);
    const r = spawnSync('unshare', ['-m', '--propagation', 'private', 'bash', join(REPO_ROOT, 'test/fixtures/journald/run-under-journald.sh'), process.execPath, OTAD, s.config], {
      encoding: 'utf8',
      timeout: 120_000,
    });
    if (r.status === 77) return ctx.skip(`a private journald cannot run here: ${r.stderr.trim()}`);
    expect(r.status, r.stderr).toBe(0);
    const [journal, errors] = r.stdout.split('=== journal\n')[1]!.split('=== errors\n') as [string, string];
    const entries = journal.trim().split('\n').map((l) => JSON.parse(l) as { MESSAGE: string; PRIORITY: string });
    expect(entries.find((e) => e.MESSAGE.startsWith('otad ready'))?.PRIORITY, 'journald took the prefix as the priority').toBe('6');
    expect(entries.every((e) => !e.MESSAGE.startsWith('<'))).toBe(true);
    expect(errors.trim().split('\n')).toEqual([expect.stringMatching(/^no usable trusted root: no update can be checked until it is fixed error=\{"code":"TRUST_ROOT_MISSING"/)]);
  });
});
