/**
 * Signing keys of the repository: ed25519, one JSON file per key, private part written 0600.
 * Layout: `<keys>/<role>/<keyid>.json`; a delegated targets role's keys (docs/trust-model.md)
 * `<keys>/delegated/<role name>/<keyid>.json`; keys taken out of service move to `<keys>/retired/`.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { Key, Signature } from '@tufjs/models';
import { OtaError } from '../core/errors.js';
import { atomicWriteFile } from '../core/atomic-file.js';

export const ROLES = ['root', 'targets', 'snapshot', 'timestamp'] as const;
export type RoleName = (typeof ROLES)[number];

export function isRoleName(value: string): value is RoleName {
  return (ROLES as readonly string[]).includes(value);
}

export interface SigningKey {
  keyid: string;
  role: RoleName;
  /** Raw 32-byte public key, hex: the TUF `keyval.public` of an ed25519 key. */
  publicHex: string;
  /** PKCS#8 PEM. */
  privatePem: string;
}

interface KeyFile {
  keyid: string;
  role: RoleName;
  /** Keys of a delegated targets role: its name (`role` is then `targets`, the kind of metadata it signs). */
  delegatedRole?: string;
  keytype: 'ed25519';
  scheme: 'ed25519';
  public: string;
  private: string;
}

/** The public TUF key object for a signing key. */
export function tufKey(key: Pick<SigningKey, 'keyid' | 'publicHex'>): Key {
  return new Key({ keyID: key.keyid, keyType: 'ed25519', scheme: 'ed25519', keyVal: { public: key.publicHex } });
}

/** TUF key id: SHA-256 of the canonical JSON of the public key object (keys sorted, no spaces). */
export function keyIdFor(publicHex: string): string {
  const canonical = `{"keytype":"ed25519","keyval":{"public":"${publicHex}"},"scheme":"ed25519"}`;
  return createHash('sha256').update(canonical).digest('hex');
}

export function generateSigningKey(role: RoleName): SigningKey {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  // The SPKI DER of an ed25519 key ends with the 32 raw key bytes.
  const spki = publicKey.export({ format: 'der', type: 'spki' });
  const publicHex = spki.subarray(spki.length - 32).toString('hex');
  const privatePem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  return { keyid: keyIdFor(publicHex), role, publicHex, privatePem };
}

/** A signer for Metadata.sign(): ed25519 over the canonical bytes it is given. */
export function signerFor(key: SigningKey): (data: Buffer) => Signature {
  const privateKey = createPrivateKey(key.privatePem);
  return (data: Buffer) => new Signature({ keyID: key.keyid, sig: sign(null, data, privateKey).toString('hex') });
}

export async function saveKey(keysDir: string, key: SigningKey): Promise<string> {
  const dir = path.join(keysDir, key.role);
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const file = path.join(dir, `${key.keyid}.json`);
  const body: KeyFile = { keyid: key.keyid, role: key.role, keytype: 'ed25519', scheme: 'ed25519', public: key.publicHex, private: key.privatePem };
  await atomicWriteFile(file, `${JSON.stringify(body, null, 2)}\n`, { mode: 0o600 });
  await fs.chmod(file, 0o600);
  return file;
}

/** All private keys present for a role (an offline role may have none on this machine). */
export async function loadRoleKeys(keysDir: string, role: RoleName): Promise<SigningKey[]> {
  const dir = path.join(keysDir, role);
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const keys: SigningKey[] = [];
  for (const name of names.filter((n) => n.endsWith('.json')).sort()) {
    keys.push(await readKeyFile(path.join(dir, name), role));
  }
  return keys;
}

export async function readKeyFile(file: string, role?: RoleName): Promise<SigningKey> {
  let parsed: Partial<KeyFile>;
  try {
    parsed = JSON.parse(await fs.readFile(file, 'utf8')) as Partial<KeyFile>;
  } catch (cause) {
    throw new OtaError('CONFIG_INVALID', `key file ${file} is not readable JSON: ${(cause as Error).message}`, { cause });
  }
  if (typeof parsed.public !== 'string' || typeof parsed.private !== 'string' || parsed.keytype !== 'ed25519') {
    throw new OtaError('CONFIG_INVALID', `key file ${file} is not an ed25519 key file (expected keytype, public and private fields)`);
  }
  const publicHex = parsed.public;
  // The file's public half must belong to its private half: a swapped file would sign with a key nobody trusts.
  const derived = createPublicKey(createPrivateKey(parsed.private)).export({ format: 'der', type: 'spki' });
  if (derived.subarray(derived.length - 32).toString('hex') !== publicHex) {
    throw new OtaError('CONFIG_INVALID', `key file ${file}: the public key does not match the private key`);
  }
  const fileRole = role ?? parsed.role;
  if (fileRole === undefined || !isRoleName(fileRole)) throw new OtaError('CONFIG_INVALID', `key file ${file} names no valid role`);
  return { keyid: keyIdFor(publicHex), role: fileRole, publicHex, privatePem: parsed.private };
}

/** Take a key out of service: it is kept (0600) under retired/ for the record, never used to sign again. */
export async function retireKey(keysDir: string, key: SigningKey): Promise<void> {
  const from = path.join(keysDir, key.role, `${key.keyid}.json`);
  const retired = path.join(keysDir, 'retired');
  await fs.mkdir(retired, { recursive: true, mode: 0o700 });
  await fs.rename(from, path.join(retired, `${key.role}-${key.keyid}.json`)).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT') throw error;
  });
}

/** Where a delegated targets role's keys live in a keys folder. */
export function delegatedKeysDir(keysDir: string, roleName: string): string {
  return path.join(keysDir, 'delegated', roleName);
}

/** Save a key of a delegated targets role, 0600 in a 0700 folder. */
export async function saveDelegatedKey(keysDir: string, roleName: string, key: SigningKey): Promise<string> {
  const dir = delegatedKeysDir(keysDir, roleName);
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const file = path.join(dir, `${key.keyid}.json`);
  const body: KeyFile = { keyid: key.keyid, role: 'targets', delegatedRole: roleName, keytype: 'ed25519', scheme: 'ed25519', public: key.publicHex, private: key.privatePem };
  await atomicWriteFile(file, `${JSON.stringify(body, null, 2)}\n`, { mode: 0o600 });
  await fs.chmod(file, 0o600);
  return file;
}

/** The private keys present for a delegated targets role (none on a machine that does not sign it). */
export async function loadDelegatedKeys(keysDir: string, roleName: string): Promise<SigningKey[]> {
  const dir = delegatedKeysDir(keysDir, roleName);
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const keys: SigningKey[] = [];
  for (const name of names.filter((n) => n.endsWith('.json')).sort()) keys.push(await readKeyFile(path.join(dir, name), 'targets'));
  return keys;
}

/** Take a delegated role's key out of service: kept (0600) under retired/, never used to sign again. */
export async function retireDelegatedKey(keysDir: string, roleName: string, keyid: string): Promise<boolean> {
  const retired = path.join(keysDir, 'retired');
  await fs.mkdir(retired, { recursive: true, mode: 0o700 });
  try {
    await fs.rename(path.join(delegatedKeysDir(keysDir, roleName), `${keyid}.json`), path.join(retired, `${roleName}-${keyid}.json`));
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}
