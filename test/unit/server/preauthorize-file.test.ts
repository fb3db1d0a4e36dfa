import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { rawPublicKey } from '../../../src/fleet/signing.js';
import { parsePreauthorizeFile } from '../../../src/server/preauthorize-file.js';

const key = () => rawPublicKey(createPublicKey(generateKeyPairSync('ed25519').privateKey));

describe('preauthorization file', () => {
  it('reads one device a line with its key and tags, skipping comments and blank lines', () => {
    const [a, b] = [key(), key()];
    expect(parsePreauthorizeFile(`# shipped in May\nrobot-1 ${a} site=warehouse-3 arm=ur5   # the first\n\n  mac-0242ac110002\t${b}\n`)).toEqual([
      { deviceId: 'robot-1', publicKey: a, tags: { site: 'warehouse-3', arm: 'ur5' } },
      { deviceId: 'mac-0242ac110002', publicKey: b, tags: {} },
    ]);
  });

  it.each([
    ['a line without a key', 'robot-1', 'line 2: expected'],
    ['a key that is not 32 bytes of base64', 'robot-1 abc=', 'the public key must be base64'],
    ['an invalid device id', `../x ${key()}`, 'device id'],
    ['a tag without =', `robot-1 ${key()} site`, '"site" is not key=value'],
    ['an invalid tag name', `robot-1 ${key()} Site=x`, 'tag names'],
  ])('refuses %s with its line number', (_what, line, message) => {
    expect(() => parsePreauthorizeFile(`# header\n${line}\n`, 'robots.txt')).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID', message: expect.stringContaining(message) }));
  });

  it('refuses a device listed twice', () => {
    const k = key();
    expect(() => parsePreauthorizeFile(`robot-1 ${k}\nrobot-1 ${k}\n`)).toThrow(/line 2: device robot-1 is listed twice/);
  });
});
