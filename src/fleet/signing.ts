/**
 * Signed device requests: the one wire format robots and the fleet server share (docs/fleet-protocol.md).
 *
 * Each robot holds an ed25519 key pair made at first start (the private key 0600 in its state folder).
 * Every request it sends to the fleet server carries five headers: its device id, its public key, a
 * timestamp, a nonce and an ed25519 signature over the method, the path with its query, the device
 * id, the timestamp, the nonce and the SHA-256 of the body. The server checks the signature, refuses a
 * timestamp more than `maxSkewMs` away from its own clock and a nonce it has seen from that device
 * within the skew window; the key itself is checked against the device's record (pending, accepted,
 * rejected, conflict) by the caller. Node's crypto does ed25519 itself, so no library is needed.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { atomicWriteFile } from '../core/atomic-file.js';
import { OtaError } from '../core/errors.js';

export const HEADER = {
  deviceId: 'ota-device-id',
  publicKey: 'ota-public-key',
  timestamp: 'ota-timestamp',
  nonce: 'ota-nonce',
  signature: 'ota-signature',
} as const;

/** Requests signed more than five minutes from the server's clock are refused. */
export const DEFAULT_MAX_SKEW_MS = 5 * 60_000;

const SIGNING_CONTEXT = 'otad-request-v1';
const DEVICE_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const NONCE = /^[0-9a-f]{32}$/;
/** The DER prefix of an ed25519 SubjectPublicKeyInfo; the 32 raw key bytes follow it. */
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export interface DeviceKey {
  privateKey: KeyObject;
  /** base64 of the 32 raw public key bytes: what the server stores and shows. */
  publicKey: string;
}

/** Load the device key, or make one (0600) when there is none yet. */
export async function loadOrCreateDeviceKey(file: string): Promise<DeviceKey & { created: boolean }> {
  let pem: string | null = null;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new OtaError('IO_FAILED', `device key ${file} is not readable: ${(error as Error).message}`, { cause: error });
    }
  }
  if (pem !== null) return { ...parseDeviceKey(pem, file), created: false };
  const { privateKey } = generateKeyPairSync('ed25519');
  await atomicWriteFile(file, privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
  return { privateKey, publicKey: rawPublicKey(createPublicKey(privateKey)), created: true };
}

export function parseDeviceKey(pem: string, file = 'device key'): DeviceKey {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(pem);
  } catch (cause) {
    throw new OtaError('CONFIG_INVALID', `${file} is not a PEM private key: ${(cause as Error).message}`, { cause });
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new OtaError('CONFIG_INVALID', `${file} holds a ${privateKey.asymmetricKeyType} key; expected ed25519`);
  return { privateKey, publicKey: rawPublicKey(createPublicKey(privateKey)) };
}

export function rawPublicKey(key: KeyObject): string {
  const der = key.export({ type: 'spki', format: 'der' });
  return der.subarray(der.length - 32).toString('base64');
}

/**
 * Parsed public keys by their base64: a fleet server verifies every check-in, and making the
 * KeyObject costs more than the signature check itself. Bounded; the oldest entry goes first.
 */
const publicKeys = new Map<string, KeyObject>();
const PUBLIC_KEY_CACHE = 65_536;

export function publicKeyFromRaw(base64: string): KeyObject {
  const cached = publicKeys.get(base64);
  if (cached !== undefined) return cached;
  const raw = Buffer.from(base64, 'base64');
  if (raw.length !== 32 || raw.toString('base64') !== base64) {
    throw new OtaError('DEVICE_SIGNATURE_INVALID', 'the public key is not 32 bytes of base64');
  }
  const key = createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
  if (publicKeys.size >= PUBLIC_KEY_CACHE) publicKeys.delete(publicKeys.keys().next().value as string);
  publicKeys.set(base64, key);
  return key;
}

/** A short fingerprint for people: the first 16 hex digits of the SHA-256 of the raw key. */
export function keyFingerprint(publicKey: string): string {
  return createHash('sha256').update(Buffer.from(publicKey, 'base64')).digest('hex').slice(0, 16);
}

function signingInput(p: { method: string; path: string; deviceId: string; timestamp: string; nonce: string; body: Uint8Array | string }): Buffer {
  const bodyHash = createHash('sha256').update(p.body).digest('hex');
  return Buffer.from([SIGNING_CONTEXT, p.method.toUpperCase(), p.path, p.deviceId, p.timestamp, p.nonce, bodyHash].join('\n'), 'utf8');
}

export interface SignRequestInput {
  method: string;
  /** Path and query as sent (`/api/v1/checkin`), without scheme and host. */
  path: string;
  deviceId: string;
  body: Uint8Array | string;
  key: DeviceKey;
  now: number;
  /** Tests only: a fixed nonce. */
  nonce?: string;
}

/** The headers that make a request signed. */
export function signRequest(input: SignRequestInput): Record<string, string> {
  const timestamp = String(Math.floor(input.now));
  const nonce = input.nonce ?? randomBytes(16).toString('hex');
  const signature = sign(null, signingInput({ ...input, timestamp, nonce }), input.key.privateKey).toString('base64');
  return {
    [HEADER.deviceId]: input.deviceId,
    [HEADER.publicKey]: input.key.publicKey,
    [HEADER.timestamp]: timestamp,
    [HEADER.nonce]: nonce,
    [HEADER.signature]: signature,
  };
}

export interface VerifiedRequest {
  deviceId: string;
  publicKey: string;
  timestamp: number;
  nonce: string;
}

export interface VerifyRequestInput {
  method: string;
  path: string;
  /** Header lookup, lower-case names (express `req.get`, a Headers object, a plain record). */
  header: (name: string) => string | undefined;
  body: Uint8Array | string;
  now: number;
  maxSkewMs?: number;
}

/**
 * Check the signature and the clock. Throws `DEVICE_AUTH_REQUIRED` (no signature headers),
 * `DEVICE_SIGNATURE_INVALID` or `DEVICE_CLOCK_SKEW`. Replays are the caller's check: it must
 * refuse a (deviceId, nonce) pair it has seen within the skew window (see `NonceWindow`).
 */
export function verifyRequest(input: VerifyRequestInput): VerifiedRequest {
  const get = (name: string): string | undefined => {
    const value = input.header(name);
    return value === undefined || value === '' ? undefined : value;
  };
  const deviceId = get(HEADER.deviceId);
  const publicKey = get(HEADER.publicKey);
  const timestamp = get(HEADER.timestamp);
  const nonce = get(HEADER.nonce);
  const signature = get(HEADER.signature);
  if (deviceId === undefined && publicKey === undefined && signature === undefined) {
    throw new OtaError('DEVICE_AUTH_REQUIRED', 'device requests must be signed with the device key (headers ota-device-id, ota-public-key, ota-timestamp, ota-nonce, ota-signature)');
  }
  if (deviceId === undefined || publicKey === undefined || timestamp === undefined || nonce === undefined || signature === undefined) {
    throw new OtaError('DEVICE_SIGNATURE_INVALID', 'a signed device request needs all five headers ota-device-id, ota-public-key, ota-timestamp, ota-nonce and ota-signature');
  }
  if (!DEVICE_ID.test(deviceId)) throw new OtaError('DEVICE_SIGNATURE_INVALID', 'ota-device-id must be 1-128 characters of [A-Za-z0-9._:-]');
  if (!NONCE.test(nonce)) throw new OtaError('DEVICE_SIGNATURE_INVALID', 'ota-nonce must be 32 lower-case hex digits');
  if (!/^[0-9]{1,16}$/.test(timestamp)) throw new OtaError('DEVICE_SIGNATURE_INVALID', 'ota-timestamp must be milliseconds since the epoch');
  const key = publicKeyFromRaw(publicKey);
  const sig = Buffer.from(signature, 'base64');
  const ok = sig.length === 64 && verify(null, signingInput({ method: input.method, path: input.path, deviceId, timestamp, nonce, body: input.body }), key, sig);
  if (!ok) throw new OtaError('DEVICE_SIGNATURE_INVALID', `the signature does not verify with the presented key of ${deviceId}`);
  const at = Number(timestamp);
  const maxSkew = input.maxSkewMs ?? DEFAULT_MAX_SKEW_MS;
  if (Math.abs(at - input.now) > maxSkew) {
    throw new OtaError('DEVICE_CLOCK_SKEW', `the request was signed at ${new Date(at).toISOString()}, ${Math.round((at - input.now) / 1000)} s from the server's clock (at most ${Math.round(maxSkew / 1000)} s allowed)`, {
      details: { signedAt: at, serverTime: input.now },
    });
  }
  return { deviceId, publicKey, timestamp: at, nonce };
}
