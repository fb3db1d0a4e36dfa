/**
 * YAML for short-lived commands. Loading the `yaml` package costs otactl about 20 ms of its
 * ~100 ms budget (`otactl status` must answer faster than a person notices), yet the files otactl
 * reads (the configuration, otad's tokens file) are almost always plain block YAML: nested maps,
 * lists, and simple scalars. This reads exactly that subset and nothing more; whatever falls
 * outside it (flow collections, anchors, tags, block scalars, multi-document markers, tabs,
 * escapes, floats, any scalar whose type YAML could read differently) is handed to the `yaml`
 * package itself, loaded only then. So the result is always what `yaml` would give: the subset is
 * checked against it in test/unit/config/yaml-lite.test.ts, and anything doubtful is not guessed.
 */
import { createRequire } from 'node:module';

/** The text is outside the subset: parse it with the real YAML parser. */
const NOT_SIMPLE = Symbol('not simple YAML');

interface Line {
  indent: number;
  text: string;
}

/** Parses text with the subset, or with the `yaml` package when the subset does not cover it. */
export function parseYaml(text: string): unknown {
  const lite = parseYamlLite(text);
  if (lite !== NOT_SIMPLE) return lite;
  const require = createRequire(import.meta.url);
  return (require('yaml') as typeof import('yaml')).parse(text, { prettyErrors: true });
}

/** The subset's answer, or NOT_SIMPLE. Exported for the equivalence test. */
export function parseYamlLite(text: string): unknown {
  try {
    const lines = toLines(text);
    if (lines.length === 0) return null;
    const [value, next] = parseNode(lines, 0, lines[0]!.indent);
    if (next !== lines.length) return NOT_SIMPLE;
    return value;
  } catch (error) {
    if (error === NOT_SIMPLE) return NOT_SIMPLE;
    throw error;
  }
}

export { NOT_SIMPLE };

function toLines(text: string): Line[] {
  if (text.includes('\t') || text.includes('\r')) throw NOT_SIMPLE;
  const out: Line[] = [];
  for (const raw of text.split('\n')) {
    const trimmed = raw.trimStart();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    if (trimmed.startsWith('---') || trimmed.startsWith('...') || trimmed.startsWith('%')) throw NOT_SIMPLE;
    out.push({ indent: raw.length - trimmed.length, text: trimmed.trimEnd() });
  }
  return out;
}

/** Parses the block starting at lines[i] whose items sit at `indent`. */
function parseNode(lines: Line[], i: number, indent: number): [unknown, number] {
  const first = lines[i]!;
  if (first.indent !== indent) throw NOT_SIMPLE;
  return first.text === '-' || first.text.startsWith('- ') ? parseSeq(lines, i, indent) : parseMap(lines, i, indent);
}

function parseSeq(lines: Line[], i: number, indent: number): [unknown[], number] {
  const out: unknown[] = [];
  while (i < lines.length && lines[i]!.indent === indent && (lines[i]!.text === '-' || lines[i]!.text.startsWith('- '))) {
    const rest = lines[i]!.text === '-' ? '' : lines[i]!.text.slice(2);
    const restTrim = rest.trimStart();
    if (restTrim === '') {
      // "-" alone: the item is the nested block below.
      i += 1;
      if (i < lines.length && lines[i]!.indent > indent) {
        const [v, n] = parseNode(lines, i, lines[i]!.indent);
        out.push(v);
        i = n;
      } else out.push(null);
      continue;
    }
    const itemIndent = indent + 2 + (rest.length - restTrim.length);
    if (restTrim.startsWith('- ') || restTrim === '-') throw NOT_SIMPLE; // a list inside a list item on one line
    if (isMapEntry(restTrim)) {
      // "- key: value" then more keys at the item's indent: a map item. Re-read it as a map whose
      // first line is the rest of this one.
      const patched: Line[] = [{ indent: itemIndent, text: restTrim }];
      let j = i + 1;
      while (j < lines.length && lines[j]!.indent >= itemIndent) patched.push(lines[j++]!);
      const [v, n] = parseMap(patched, 0, itemIndent);
      if (n !== patched.length) throw NOT_SIMPLE;
      out.push(v);
      i = j;
      continue;
    }
    out.push(scalar(restTrim));
    i += 1;
    if (i < lines.length && lines[i]!.indent > indent) throw NOT_SIMPLE; // a multi-line plain scalar
  }
  return [out, i];
}

function parseMap(lines: Line[], i: number, indent: number): [Record<string, unknown>, number] {
  const out: Record<string, unknown> = {};
  while (i < lines.length && lines[i]!.indent === indent) {
    const line = lines[i]!.text;
    if (line === '-' || line.startsWith('- ')) throw NOT_SIMPLE; // a list where a key belongs
    const entry = splitEntry(line);
    if (entry === null) throw NOT_SIMPLE;
    const [key, rest] = entry;
    if (Object.prototype.hasOwnProperty.call(out, key)) throw NOT_SIMPLE; // duplicates: let yaml report them
    i += 1;
    if (rest === '') {
      const next = lines[i];
      if (next !== undefined && next.indent > indent) {
        const [v, n] = parseNode(lines, i, next.indent);
        out[key] = v;
        i = n;
      } else if (next !== undefined && next.indent === indent && (next.text === '-' || next.text.startsWith('- '))) {
        // "key:" with its list at the same indent, which YAML allows.
        const [v, n] = parseSeq(lines, i, indent);
        out[key] = v;
        i = n;
      } else out[key] = null;
      continue;
    }
    out[key] = scalar(rest);
    if (i < lines.length && lines[i]!.indent > indent) throw NOT_SIMPLE; // a multi-line plain scalar
  }
  return [out, i];
}

const KEY = /^[A-Za-z_][A-Za-z0-9_-]*$/;

function isMapEntry(text: string): boolean {
  return splitEntry(text) !== null;
}

/** `key: value` or `key:` with a plain identifier key; null for anything else. */
function splitEntry(text: string): [string, string] | null {
  const colon = text.indexOf(':');
  if (colon <= 0) return null;
  const key = text.slice(0, colon);
  if (!KEY.test(key)) return null;
  const after = text.slice(colon + 1);
  if (after !== '' && !after.startsWith(' ')) return null;
  return [key, stripComment(after.trim())];
}

/** A trailing ` # comment` after a value; a value that starts with # is a comment. */
function stripComment(value: string): string {
  if (value.startsWith('#')) return '';
  if (value.startsWith("'") || value.startsWith('"')) {
    const close = value.indexOf(value[0]!, 1);
    if (close < 0) throw NOT_SIMPLE;
    const tail = value.slice(close + 1).trim();
    if (tail !== '' && !tail.startsWith('#')) throw NOT_SIMPLE;
    return value.slice(0, close + 1);
  }
  const hash = value.indexOf(' #');
  return hash >= 0 ? value.slice(0, hash).trimEnd() : value;
}

/** The YAML 1.2 core schema's ints, floats, infinities and NaN: not strings (yaml.org/spec/1.2.2 §10.3.2). */
const CORE_NON_STRING = [
  /^[-+]?[0-9]+$/,
  /^0o[0-7]+$/,
  /^0x[0-9a-fA-F]+$/,
  /^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$/,
  /^[-+]?\.(inf|Inf|INF)$/,
  /^\.(nan|NaN|NAN)$/,
];

/** A scalar YAML 1.2 (core schema, as the yaml package reads it) gives the same value for. */
function scalar(text: string): unknown {
  if (text.startsWith("'")) {
    const inner = text.slice(1, -1);
    if (!text.endsWith("'") || text.length < 2 || inner.includes("'")) throw NOT_SIMPLE;
    return inner;
  }
  if (text.startsWith('"')) {
    const inner = text.slice(1, -1);
    if (!text.endsWith('"') || text.length < 2 || inner.includes('"') || inner.includes('\\')) throw NOT_SIMPLE;
    return inner;
  }
  // The empty flow collections are common (`services: []`) and cannot be read two ways.
  if (text === '[]') return [];
  if (text === '{}') return {};
  // A one-line flow list of plain words (`command: [/opt/robot-ai/bin/robot-ai, --serve]`); any
  // quoting, nesting, colon, comment or empty item inside goes to the real parser.
  if (text.startsWith('[') && text.endsWith(']')) {
    const inner = text.slice(1, -1);
    if (/[[\]{}"'#:]/.test(inner)) throw NOT_SIMPLE;
    const items = inner.split(',').map((x) => x.trim());
    if (items.some((x) => x === '')) throw NOT_SIMPLE;
    return items.map(scalar);
  }
  if (text === 'true') return true;
  if (text === 'false') return false;
  if (text === 'null' || text === '~') return null;
  if (/^-?(0|[1-9][0-9]{0,14})$/.test(text)) return Number(text);
  // Anything YAML might read as another type, or as syntax, goes to the real parser: other
  // spellings of booleans and nulls, floats, octal/hex, .inf/.nan, flow and anchor indicators.
  if (/^(true|false|null|yes|no|on|off|y|n)$/i.test(text)) throw NOT_SIMPLE;
  if (CORE_NON_STRING.some((re) => re.test(text))) throw NOT_SIMPLE;
  if (/^[-+]?[0-9][0-9:._]*$/.test(text) && text.includes(':')) throw NOT_SIMPLE; // YAML 1.1 sexagesimal look-alikes
  // A leading indicator makes it syntax, except a dash before a word (`--serve`), which YAML reads
  // as a plain scalar (numbers such as -5 were taken above).
  if (/^[-?:,[\]{}#&*!|>'"%@`.+]/.test(text) && !/^--?[A-Za-z0-9]/.test(text)) throw NOT_SIMPLE;
  if (text.includes(': ') || text.endsWith(':') || text.includes(' #')) throw NOT_SIMPLE;
  return text;
}
