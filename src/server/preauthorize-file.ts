/**
 * The preauthorization list (docs/fleet-protocol.md): one device a line,
 * `<device id> <public key> [site=<site>] [key=value…]`, `#` starts a comment.
 */
import { OtaError } from '../core/errors.js';
import { publicKeyFromRaw } from '../fleet/signing.js';
import type { Preauthorization } from './store/fleet-store.js';
import { tagsSchema } from './checkin-body.js';

const DEVICE_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function parsePreauthorizeFile(text: string, file = 'preauthorize file'): Preauthorization[] {
  const entries: Preauthorization[] = [];
  const seen = new Set<string>();
  text.split('\n').forEach((raw, index) => {
    const line = raw.replace(/#.*$/, '').trim();
    if (line === '') return;
    const where = `${file} line ${index + 1}`;
    const [deviceId, publicKey, ...rest] = line.split(/\s+/);
    if (deviceId === undefined || !DEVICE_ID.test(deviceId)) throw new OtaError('CONFIG_INVALID', `${where}: the device id must be 1-128 characters of [A-Za-z0-9._:-]`);
    if (publicKey === undefined) throw new OtaError('CONFIG_INVALID', `${where}: expected "<device id> <public key> [site=<site>] [key=value…]"`);
    try {
      publicKeyFromRaw(publicKey);
    } catch {
      throw new OtaError('CONFIG_INVALID', `${where}: the public key must be base64 of the 32 raw ed25519 bytes (what the robot's check-in presents)`);
    }
    if (seen.has(deviceId)) throw new OtaError('CONFIG_INVALID', `${where}: device ${deviceId} is listed twice`);
    seen.add(deviceId);
    const tags: Record<string, string> = {};
    for (const pair of rest) {
      const eq = pair.indexOf('=');
      if (eq < 1) throw new OtaError('CONFIG_INVALID', `${where}: "${pair}" is not key=value`);
      tags[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
    const parsed = tagsSchema.safeParse(tags);
    if (!parsed.success) throw new OtaError('CONFIG_INVALID', `${where}: ${parsed.error.issues[0]!.message}`);
    entries.push({ deviceId, publicKey, tags: parsed.data });
  });
  return entries;
}
