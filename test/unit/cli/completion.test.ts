/**
 * The bash completion the .deb ships is generated from the commander programs (src/cli/completion.ts):
 * here the generated function runs in a real bash, and every subcommand at every level, and every
 * option, must come back as a completion.
 */
import { spawnSync } from 'node:child_process';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { COMPLETED_PROGRAMS, bashCompletion } from '../../../src/cli/completion.js';

/** COMPREPLY for the command line `words`, whose last word is being completed. */
function complete(script: string, words: string[]): string[] {
  const name = words[0]!;
  const fn = `_${name.replace(/[^\w]/g, '_')}`;
  const program = `${script}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; ${fn}; printf '%s\\n' "\${COMPREPLY[@]}"`;
  const r = spawnSync('bash', ['--norc', '-c', program], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.split('\n').filter((l) => l !== '');
}

function levels(cmd: Command, path: string[] = []): Array<{ path: string[]; cmd: Command }> {
  return [{ path, cmd }, ...cmd.commands.flatMap((c) => levels(c, [...path, c.name()]))];
}

describe('bash completion generated from the command line', () => {
  for (const [name, load] of Object.entries(COMPLETED_PROGRAMS)) {
    it(`${name}: completes every subcommand at every level and every option`, async () => {
      const program = await load();
      const script = bashCompletion(program);
      expect(spawnSync('bash', ['-n'], { input: script }).status).toBe(0);
      for (const { path, cmd } of levels(program)) {
        const subcommands = cmd.commands.map((c) => c.name());
        if (subcommands.length > 0) expect(complete(script, [name, ...path, '']), `${name} ${path.join(' ')} <TAB>`).toEqual(expect.arrayContaining(subcommands));
        const flags = cmd.options.flatMap((o) => [o.short, o.long]).filter((f): f is string => typeof f === 'string');
        expect(complete(script, [name, ...path, '-']), `${name} ${path.join(' ')} -<TAB>`).toEqual(expect.arrayContaining(flags));
      }
    });
  }

  it('skips global options and their values on the way to a subcommand', async () => {
    const script = bashCompletion(await COMPLETED_PROGRAMS['otactl']!());
    expect(complete(script, ['otactl', '--config', '/etc/ota/config.yaml', 'releases', ''])).toContain('unmark');
    expect(complete(script, ['otactl', 'logs', '--level', ''])).toEqual(['error', 'warn', 'info', 'debug']);
    expect(complete(script, ['otactl', 'sta'])).toEqual(['status']);
  });

  it('ota-repo: its commands after --repo/--keys and their values, and add\'s options', async () => {
    const script = bashCompletion(await COMPLETED_PROGRAMS['ota-repo']!());
    expect(complete(script, ['ota-repo', '--repo', '/srv/ota/repo', '--keys', '/srv/ota/keys', ''])).toEqual(
      expect.arrayContaining(['init', 'keygen', 'add', 'rollout', 'publish', 'refresh-timestamp', 'rotate-key', 'verify']),
    );
    expect(complete(script, ['ota-repo', 'add', '--pro'])).toEqual(['--product']);
    expect(complete(script, ['ota-repo', 'rotate-key', '--role', 'tar'])).toEqual([]);
    expect(complete(script, ['ota-repo', 'ver'])).toEqual(['verify']);
  });
});
