/**
 * The studio's template editor: product-type templates (config/product-types/<type>.yaml) edited,
 * validated and versioned as files. `<type>.yaml` is always the current version (what robots and
 * ota-repo read); every saved version, the current one included, is also kept as
 * `.history/<type>/v<N>.yaml` in the same folder (robots list only `*.yaml` at the top, so the
 * history is invisible to them). A template that was never saved through the studio is version 1.
 * A template is validated with the robot's own product schema (src/config/schema.ts), as a product
 * entry of that type would be, so a template the studio accepts is one robots accept.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { diffLines } from 'diff';
import { LineCounter, isMap, parseDocument } from 'yaml';
import { atomicWriteFile } from '../../core/atomic-file.js';
import { OtaError } from '../../core/errors.js';
import { productSchema } from '../../config/schema.js';
import { describeUnknownKeys, formatPath } from '../../config/unknown-keys.js';

const TYPE_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;
/** Keys of a product entry that belong to one robot's product, never to a type's template. */
const ENTRY_ONLY_KEYS = ['name', 'type', 'installPath', 'releasesDir'];
/** Large enough for any real template; a bigger text is refused before it is parsed. */
export const MAX_TEMPLATE_BYTES = 64 * 1024;

export interface TemplateProblem {
  /** The key concerned, e.g. `probation.window` (`(top level)` for the document). */
  field: string;
  /** 1-based line of that key in the text, when it is there. */
  line: number | null;
  message: string;
}

export interface DiffLine {
  kind: 'add' | 'remove' | 'same';
  text: string;
}

export interface TemplateVersionInfo {
  version: number;
  savedAt: string;
  bytes: number;
}

export function checkTypeName(name: unknown): string {
  if (typeof name !== 'string' || !TYPE_NAME.test(name)) {
    throw new OtaError('API_INVALID_REQUEST', `product type ${JSON.stringify(name)}: expected a name such as robot-ai ([a-z0-9._-], at most 64 characters)`);
  }
  return name;
}

/** The problems of a template text, each with its key and line; empty when robots would accept it. */
export function validateTemplate(text: string): TemplateProblem[] {
  if (Buffer.byteLength(text) > MAX_TEMPLATE_BYTES) return [{ field: '(top level)', line: null, message: `the template is ${Buffer.byteLength(text)} bytes; at most ${MAX_TEMPLATE_BYTES}` }];
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false });
  if (doc.errors.length > 0) {
    return doc.errors.map((e) => ({ field: '(top level)', line: e.linePos?.[0]?.line ?? null, message: `not valid YAML: ${e.message.split('\n')[0]}` }));
  }
  const value: unknown = doc.toJS() ?? {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return [{ field: '(top level)', line: 1, message: 'expected a mapping of product settings (versionFile:, services:, …)' }];
  const lineOf = (keyPath: ReadonlyArray<PropertyKey>): number | null => {
    // The line of the deepest key of the path that is in the text.
    for (let n = keyPath.length; n > 0; n--) {
      const parent = n === 1 ? doc.contents : doc.getIn(keyPath.slice(0, n - 1), true);
      if (!isMap(parent)) continue;
      const pair = parent.items.find((p) => (p.key as { value?: unknown } | null)?.value === keyPath[n - 1]);
      const range = (pair?.key as { range?: [number, number, number] } | null)?.range;
      if (range) return lines.linePos(range[0]).line;
    }
    return null;
  };
  const problems: TemplateProblem[] = [];
  const template = value as Record<string, unknown>;
  for (const key of ENTRY_ONLY_KEYS) {
    if (key in template) problems.push({ field: key, line: lineOf([key]), message: `${key} is set by each robot's product entry, not by its type's template` });
  }
  // Checked as the product entry `{ name, installPath, type }` of a robot would be, after the merge.
  const entry: Record<string, unknown> = { ...template, name: 'template-check', installPath: '/opt/template-check' };
  for (const key of ENTRY_ONLY_KEYS.filter((k) => k !== 'name' && k !== 'installPath')) delete entry[key];
  const result = productSchema.safeParse(entry, { reportInput: true });
  if (!result.success) {
    for (const issue of result.error.issues) {
      if (issue.code === 'unrecognized_keys') {
        for (const u of describeUnknownKeys(productSchema, entry, issue.path, issue.keys)) {
          problems.push({ field: u.path, line: lineOf([...issue.path, u.key]), message: u.message.replace(/^[^:]*: /, '') });
        }
        continue;
      }
      const shown = 'input' in issue && issue.input !== undefined ? `is ${JSON.stringify(issue.input)}: ` : '';
      problems.push({ field: formatPath(issue.path), line: lineOf(issue.path), message: `${shown}${issue.message}` });
    }
  }
  return problems;
}

/** A line diff (the `diff` package) of two texts, for the page. */
export function diffTemplates(before: string, after: string): DiffLine[] {
  const out: DiffLine[] = [];
  for (const change of diffLines(before, after)) {
    const kind = change.added ? 'add' : change.removed ? 'remove' : 'same';
    const body = change.value.endsWith('\n') ? change.value.slice(0, -1) : change.value;
    for (const text of body.split('\n')) out.push({ kind, text });
  }
  return out;
}

export interface TemplateStore {
  list(): Promise<Array<{ name: string; version: number }>>;
  get(name: unknown, version?: unknown): Promise<{ name: string; version: number; current: number; text: string; versions: TemplateVersionInfo[]; problems: TemplateProblem[]; diffFromPrevious: DiffLine[] | null }>;
  check(name: unknown, text: unknown): Promise<{ problems: TemplateProblem[]; diff: DiffLine[]; current: number }>;
  save(name: unknown, text: unknown, baseVersion: unknown): Promise<{ ok: true; name: string; version: number; diff: DiffLine[] } | { ok: false; problems: TemplateProblem[] }>;
}

export function createTemplateStore(dir: string): TemplateStore {
  const historyDir = (name: string) => path.join(dir, '.history', name);
  const currentFile = (name: string) => path.join(dir, `${name}.yaml`);
  let lock: Promise<unknown> = Promise.resolve();
  const exclusive = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = lock.then(fn);
    lock = run.catch(() => {});
    return run;
  };

  async function readCurrent(name: string): Promise<string | null> {
    return fs.readFile(currentFile(name), 'utf8').catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return null;
      throw error;
    });
  }

  /** The recorded versions (v<N>.yaml in the history folder), oldest first. */
  async function recorded(name: string): Promise<TemplateVersionInfo[]> {
    const files = await fs.readdir(historyDir(name)).catch(() => [] as string[]);
    const out: TemplateVersionInfo[] = [];
    for (const f of files) {
      const m = /^v([1-9][0-9]{0,8})\.yaml$/.exec(f);
      if (m === null) continue;
      const st = await fs.stat(path.join(historyDir(name), f));
      out.push({ version: Number(m[1]), savedAt: st.mtime.toISOString(), bytes: st.size });
    }
    return out.sort((a, b) => a.version - b.version);
  }

  /** Every version, the never-recorded original counting as version 1. */
  async function versions(name: string): Promise<TemplateVersionInfo[]> {
    const kept = await recorded(name);
    if (kept.length > 0) return kept;
    const st = await fs.stat(currentFile(name)).catch(() => null);
    return st === null ? [] : [{ version: 1, savedAt: st.mtime.toISOString(), bytes: st.size }];
  }

  async function textOf(name: string, version: number): Promise<string | null> {
    const kept = await recorded(name);
    if (kept.length === 0) return version === 1 ? readCurrent(name) : null;
    if (!kept.some((v) => v.version === version)) return null;
    return fs.readFile(path.join(historyDir(name), `v${version}.yaml`), 'utf8');
  }

  function textArg(text: unknown): string {
    if (typeof text !== 'string') throw new OtaError('API_INVALID_REQUEST', 'send the template as {"text": "…YAML…"}');
    return text;
  }

  return {
    async list() {
      const names = (await fs.readdir(dir).catch(() => [] as string[])).filter((f) => f.endsWith('.yaml') && TYPE_NAME.test(f.slice(0, -5))).map((f) => f.slice(0, -5)).sort();
      return Promise.all(names.map(async (name) => ({ name, version: (await versions(name)).at(-1)?.version ?? 1 })));
    },

    async get(nameArg, versionArg) {
      const name = checkTypeName(nameArg);
      const all = await versions(name);
      if (all.length === 0) throw new OtaError('API_NOT_FOUND', `no product type ${name} in ${dir}`);
      const current = all.at(-1)!.version;
      const version = versionArg === undefined || versionArg === '' ? current : Number(versionArg);
      const text = Number.isInteger(version) ? await textOf(name, version) : null;
      if (text === null) throw new OtaError('API_NOT_FOUND', `product type ${name} has no version ${String(versionArg)} (versions 1 to ${current})`);
      const previous = all.filter((v) => v.version < version).at(-1);
      const before = previous === undefined ? null : await textOf(name, previous.version);
      return { name, version, current, text, versions: all, problems: validateTemplate(text), diffFromPrevious: before === null ? null : diffTemplates(before, text) };
    },

    async check(nameArg, textArg_) {
      const name = checkTypeName(nameArg);
      const text = textArg(textArg_);
      const all = await versions(name);
      const before = (await readCurrent(name)) ?? '';
      return { problems: validateTemplate(text), diff: diffTemplates(before, text), current: all.at(-1)?.version ?? 0 };
    },

    async save(nameArg, textArg_, baseArg) {
      const name = checkTypeName(nameArg);
      const text = textArg(textArg_);
      const problems = validateTemplate(text);
      if (problems.length > 0) return { ok: false, problems };
      return exclusive(async () => {
        const all = await versions(name);
        const current = all.at(-1)?.version ?? 0;
        if (baseArg !== current) {
          throw new OtaError(
            'TEMPLATE_CHANGED',
            current === 0
              ? `product type ${name} does not exist yet: create it with baseVersion 0`
              : `product type ${name} is at version ${current}, not ${JSON.stringify(baseArg)}: someone saved it meanwhile; reload it and apply your change again`,
            { details: { current } },
          );
        }
        const before = (await readCurrent(name)) ?? '';
        // The original of a template never saved here becomes version 1 before version 2 is written.
        if ((await recorded(name)).length === 0 && current === 1) await atomicWriteFile(path.join(historyDir(name), 'v1.yaml'), before);
        const version = current + 1;
        const body = text.endsWith('\n') ? text : `${text}\n`;
        await atomicWriteFile(path.join(historyDir(name), `v${version}.yaml`), body);
        await atomicWriteFile(currentFile(name), body);
        return { ok: true as const, name, version, diff: diffTemplates(before, body) };
      });
    },
  };
}
