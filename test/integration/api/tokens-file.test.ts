import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadTokensFile } from '../../../src/api/tokens.js';

describe('the API tokens file', () => {
  it('refuses a tokens file that group or other may read, naming the fix', () => {
    const dir = mkdtempSync(join(tmpdir(), 'otad-tokens-'));
    const file = join(dir, 'tokens.yaml');
    writeFileSync(file, 'tokens:\n  - { name: ai, token: control-token-0123456789, scope: control }\n');
    try {
      chmodSync(file, 0o640);
      expect(() => loadTokensFile(file)).toThrow(/mode 0640.*chmod 600/);
      chmodSync(file, 0o600);
      expect(loadTokensFile(file).verify('control-token-0123456789')).toEqual({ name: 'ai', scope: 'control' });
      writeFileSync(file, 'tokens:\n  - { name: ai, token: short, scope: admin }\n');
      expect(() => loadTokensFile(file)).toThrow(/at least 16 characters/);
      expect(() => loadTokensFile(join(dir, 'missing.yaml'))).toThrow(/cannot be read \(ENOENT\)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
