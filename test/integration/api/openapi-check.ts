/**
 * A small JSON Schema (2020-12 subset) validator, enough for the OpenAPI document otad serves:
 * $ref into components, type, properties, required, additionalProperties, items, enum, const,
 * anyOf/oneOf/allOf, pattern, numeric and length bounds. Tests use it to check real responses
 * against the served document, so the document cannot drift from the API.
 */
type Schema = Record<string, unknown>;

export function validate(doc: Schema, schema: Schema, value: unknown, path = '$'): string[] {
  if (typeof schema.$ref === 'string') {
    const id = schema.$ref.replace('#/components/schemas/', '');
    const target = ((doc.components as Schema).schemas as Record<string, Schema>)[id];
    if (!target) return [`${path}: unresolved $ref ${schema.$ref}`];
    return validate(doc, target, value, path);
  }
  const errors: string[] = [];
  if (Array.isArray(schema.anyOf) || Array.isArray(schema.oneOf)) {
    const options = (schema.anyOf ?? schema.oneOf) as Schema[];
    const passing = options.filter((o) => validate(doc, o, value, path).length === 0).length;
    if (passing === 0 || (schema.oneOf && passing > 1)) errors.push(`${path}: matches ${passing} of the alternatives`);
  }
  if (Array.isArray(schema.allOf)) for (const s of schema.allOf as Schema[]) errors.push(...validate(doc, s, value, path));
  if ('const' in schema && value !== schema.const) errors.push(`${path}: expected ${JSON.stringify(schema.const)}`);
  if (Array.isArray(schema.enum) && !schema.enum.includes(value)) errors.push(`${path}: ${JSON.stringify(value)} not in enum`);
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? (schema.type as string[]) : [schema.type as string];
    if (!types.some((t) => typeOk(t, value))) return [...errors, `${path}: expected ${types.join('|')}, got ${value === null ? 'null' : typeof value}`];
  }
  if (typeof value === 'string') {
    if (typeof schema.pattern === 'string' && !new RegExp(schema.pattern, 'u').test(value)) errors.push(`${path}: does not match ${schema.pattern}`);
    if (typeof schema.minLength === 'number' && value.length < schema.minLength) errors.push(`${path}: shorter than ${schema.minLength}`);
    if (typeof schema.maxLength === 'number' && value.length > schema.maxLength) errors.push(`${path}: longer than ${schema.maxLength}`);
  }
  if (typeof value === 'number') {
    if (typeof schema.minimum === 'number' && value < schema.minimum) errors.push(`${path}: below ${schema.minimum}`);
    if (typeof schema.maximum === 'number' && value > schema.maximum) errors.push(`${path}: above ${schema.maximum}`);
  }
  if (Array.isArray(value) && schema.items && typeof schema.items === 'object') {
    value.forEach((v, i) => errors.push(...validate(doc, schema.items as Schema, v, `${path}[${i}]`)));
  }
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const obj = value as Record<string, unknown>;
    const props = (schema.properties ?? {}) as Record<string, Schema>;
    for (const r of (schema.required ?? []) as string[]) if (!(r in obj)) errors.push(`${path}: missing required ${r}`);
    for (const [k, v] of Object.entries(obj)) {
      if (props[k]) errors.push(...validate(doc, props[k], v, `${path}.${k}`));
      else if (schema.additionalProperties === false) errors.push(`${path}: unexpected property ${k}`);
      else if (schema.additionalProperties && typeof schema.additionalProperties === 'object') errors.push(...validate(doc, schema.additionalProperties as Schema, v, `${path}.${k}`));
    }
  }
  return errors;
}

function typeOk(t: string, v: unknown): boolean {
  switch (t) {
    case 'null':
      return v === null;
    case 'integer':
      return Number.isInteger(v);
    case 'number':
      return typeof v === 'number';
    case 'array':
      return Array.isArray(v);
    case 'object':
      return v !== null && typeof v === 'object' && !Array.isArray(v);
    default:
      return typeof v === t;
  }
}

/** The response schema the document declares for a path template, method and status. */
export function responseSchema(doc: Schema, pathTemplate: string, method: string, status: number): Schema {
  const op = ((doc.paths as Record<string, Schema>)[pathTemplate] ?? {})[method] as Schema | undefined;
  if (!op) throw new Error(`the OpenAPI document has no ${method.toUpperCase()} ${pathTemplate}`);
  const resp = (op.responses as Record<string, Schema>)[String(status)];
  if (!resp) throw new Error(`the OpenAPI document declares no ${status} for ${method.toUpperCase()} ${pathTemplate}`);
  return ((resp.content as Schema)['application/json'] as Schema).schema as Schema;
}

/** Throws with every mismatch when a real response does not match the document. */
export function assertMatchesDocument(doc: Schema, pathTemplate: string, method: string, status: number, body: unknown): void {
  const errors = validate(doc, responseSchema(doc, pathTemplate, method, status), body);
  if (errors.length) throw new Error(`${method.toUpperCase()} ${pathTemplate} ${status} does not match the OpenAPI document:\n  ${errors.slice(0, 20).join('\n  ')}`);
}
