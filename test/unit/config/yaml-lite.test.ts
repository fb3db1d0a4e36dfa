/**
 * The YAML subset reader gives what the yaml package gives, or steps aside: checked on every YAML
 * file and YAML block of the repository, on tricky hand-written documents, and on thousands of
 * random documents written by YAML.stringify. It must also really cover the files otactl reads on
 * every call (otad's tokens file, the shipped example configurations), or it saves nothing.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { NOT_SIMPLE, parseYaml, parseYamlLite } from '../../../src/config/yaml-lite.js';
import { REPO_ROOT } from '../../support/otad-process.js';

function sameAsYaml(text: string, where: string): 'lite' | 'fallback' {
  let expected: unknown;
  let yamlError: unknown = null;
  try {
    expected = YAML.parse(text);
  } catch (error) {
    yamlError = error;
  }
  const lite = parseYamlLite(text);
  if (lite === NOT_SIMPLE) return 'fallback';
  expect(yamlError, `${where}: the subset accepted a document yaml rejects`).toBeNull();
  expect(lite, where).toEqual(expected);
  return 'lite';
}

function filesUnder(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name.startsWith('.') || name === 'dist' || name === 'dist-test') continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) filesUnder(p, out);
    else out.push(p);
  }
  return out;
}

describe('the YAML subset reader', () => {
  it('agrees with yaml on every YAML file and every ```yaml block of the repository', () => {
    let checked = 0;
    for (const file of filesUnder(REPO_ROOT)) {
      if (/\.ya?ml$/.test(file)) {
        sameAsYaml(readFileSync(file, 'utf8'), file);
        checked++;
      } else if (file.endsWith('.md')) {
        const blocks = readFileSync(file, 'utf8').matchAll(/```ya?ml\n([\s\S]*?)```/g);
        for (const [, body] of blocks) {
          sameAsYaml(body!, `${file} (yaml block)`);
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThan(5);
  });

  it('reads the files otactl reads on every call itself, without loading yaml', () => {
    const tokens = 'tokens:\n  - name: robot-ai\n    token: ctl-0123456789abcdef-control\n    scope: control\n  - name: dashboard\n    token: read-0123456789abcdef-read\n    scope: read\n';
    expect(sameAsYaml(tokens, 'tokens file')).toBe('lite');
    expect(parseYaml(tokens)).toEqual(YAML.parse(tokens));
    for (const example of ['config/config.example.yaml', 'config/config.no-systemd.example.yaml']) {
      expect(sameAsYaml(readFileSync(join(REPO_ROOT, example), 'utf8'), example), example).toBe('lite');
    }
    expect(sameAsYaml('command: [/opt/robot-ai/bin/robot-ai, --serve, 8080]\nservices: []\n', 'flow lists of words')).toBe('lite');
    expect(parseYaml('command: [/opt/robot-ai/bin/robot-ai, --serve, 8080]')).toEqual({ command: ['/opt/robot-ai/bin/robot-ai', '--serve', 8080] });
    expect(sameAsYaml(YAML.stringify({ tokens: [{ name: 'a', token: 'x'.repeat(40), scope: 'read' }] }), 'written by YAML.stringify')).toBe('lite');
  });

  it('steps aside for everything outside the subset, and never guesses a type', () => {
    const outside = [
      'a: [1, [2]]',
      'a: [x, ]',
      "a: ['x', y]",
      'a: [x: 1]',
      'a: [x #c]',
      'a: {b: 1}',
      'a: &x 1\nb: *x',
      'a: !!str 1',
      'a: |\n  text\n',
      'a: >\n  text\n',
      '---\na: 1\n',
      'a: 1\n...\n',
      'a:\tb',
      'a: 1.5',
      'a: 1e3',
      'a: .inf',
      'a: 0x1f',
      'a: 0o17',
      'a: 007',
      'a: 03:00',
      'a: True',
      'a: NULL',
      'a: yes',
      'a: "with \\"escape\\""',
      "a: 'it''s'",
      'a: b: c',
      'a: b\n  c',
      'a: 1\na: 2',
      '"a": 1',
      'a.b: 1',
      '? a\n: 1',
      'a:\n  - b\n   - c',
      '- - a',
      'a: 12345678901234567890',
    ];
    for (const text of outside) {
      expect(parseYamlLite(text), text).toBe(NOT_SIMPLE);
      // …and the fallback answers exactly as yaml does (or throws as it does).
      let expected: unknown;
      try {
        expected = YAML.parse(text);
      } catch {
        expect(() => parseYaml(text), text).toThrow();
        continue;
      }
      expect(parseYaml(text), text).toEqual(expected);
    }
  });

  it('agrees with yaml on thousands of random documents', () => {
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
    const strings = ['robot-ai', '/var/lib/ota', 'http://127.0.0.1:7780', 'a b c', '', ' lead', 'trail ', '-x', '~', 'null', 'True', 'yes', '0x1f', '007', '1.5', '03:00', 'a: b', '#x', 'a #b', "it's", 'say "hi"', 'back\\slash', '[x]', '{x}', '*x', '&x', '!x', '%x', '@x', '`x', 'multi\nline', 'ünï', 'x:y', '-', '? q', ',', '30m'];
    const keys = ['a', 'name', 'token', 'stateDir', 'api_port', 'x-y', 'A1', 'with space', 'dotted.key', '1', 'true'];
    const value = (depth: number): unknown => {
      const r = rnd();
      if (depth > 3 || r < 0.45) {
        const s = rnd();
        if (s < 0.5) return pick(strings);
        if (s < 0.7) return Math.floor(rnd() * 100000) - 500;
        if (s < 0.8) return rnd() < 0.5;
        if (s < 0.85) return null;
        return rnd() * 10;
      }
      if (r < 0.75) return Object.fromEntries(Array.from({ length: 1 + Math.floor(rnd() * 4) }, () => [pick(keys), value(depth + 1)]));
      return Array.from({ length: Math.floor(rnd() * 4) }, () => value(depth + 1));
    };
    let lite = 0;
    for (let i = 0; i < 3000; i++) {
      const doc = Object.fromEntries(Array.from({ length: 1 + Math.floor(rnd() * 4) }, () => [pick(keys), value(0)]));
      const text = YAML.stringify(doc, { indent: pick([2, 4]), indentSeq: rnd() < 0.5 });
      if (sameAsYaml(text, text) === 'lite') lite++;
    }
    // The subset covers a real share of ordinary documents, not none of them.
    expect(lite).toBeGreaterThan(100);
  });
});
