/**
 * The rules for entry names and modes that the scanner judges before the kernel ever sees them.
 * A name the kernel would refuse (a component over NAME_MAX, a path over PATH_MAX) must fail the
 * scan, not the extraction after files were written; a name the tar parser had to rewrite (bytes
 * that are not UTF-8 come out as U+FFFD) would install a tree that differs from the signed
 * archive; a control character in a name (a newline) breaks every log and tool that lists files;
 * and a name otad itself writes inside a release would let a package forge otad's own records.
 *
 * Modes: a release runs as root, so a file or directory that group or other may write is a local
 * privilege escalation. Such entries are rejected (PACKAGE_UNSAFE_MODE), never masked: masking
 * would install a tree that differs from what the publisher signed without anyone noticing.
 * Owners are never taken from the archive (extraction runs with chown off).
 */
import { OtaError } from '../core/errors.js';

/** 'package': an archive from a publisher (every rule). 'backup': an archive otad wrote itself. */
export type EntryOrigin = 'package' | 'backup';

/** Linux NAME_MAX: bytes in one path component. */
export const MAX_COMPONENT_BYTES = 255;
/** Linux PATH_MAX is 4096 with the terminating NUL: bytes in an entry's path inside the release. */
export const MAX_PATH_BYTES = 4095;
/** Names at the release root otad writes itself (RELEASE_MARKER and the temp files of its atomic writes). */
export const RESERVED_ROOT_PREFIXES: readonly string[] = ['.ota-', '..ota-'];

/** C0 controls, DEL and C1 controls. */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const REPLACEMENT = '\ufffd';
const GROUP_OTHER_WRITE = 0o022;

/**
 * `raw` is the name as the tar parser decoded it, `path` its normalised form. tar-stream decodes
 * names (and PAX paths) as UTF-8, turning every byte sequence that is not UTF-8 into U+FFFD, so a
 * U+FFFD in a name is exactly the sign of bytes that were rewritten; a literal U+FFFD in a real
 * file name is refused too (documented in docs/packages.md), which costs nothing in practice.
 */
export function checkEntryName(raw: string, path: string, origin: EntryOrigin): void {
  if (raw.includes(REPLACEMENT)) throw unsafeName(raw, 'the name is not valid UTF-8 (or contains U+FFFD)');
  if (origin === 'package' && CONTROL.test(raw)) throw unsafeName(raw, 'the name contains a control character');
  if (path === '') return;
  const pathBytes = Buffer.byteLength(path, 'utf8');
  if (pathBytes > MAX_PATH_BYTES) throw unsafeName(raw, `the path is ${pathBytes} bytes long; at most ${MAX_PATH_BYTES} are allowed`);
  const components = path.split('/');
  for (const component of components) {
    const bytes = Buffer.byteLength(component, 'utf8');
    if (bytes > MAX_COMPONENT_BYTES) {
      throw unsafeName(raw, `a name component is ${bytes} bytes long; at most ${MAX_COMPONENT_BYTES} are allowed`);
    }
  }
  if (origin === 'package') {
    const top = components[0] as string;
    if (RESERVED_ROOT_PREFIXES.some((p) => top.startsWith(p))) {
      throw unsafeName(raw, `names starting with ${RESERVED_ROOT_PREFIXES.map((p) => `"${p}"`).join(' or ')} at the release root are reserved for otad's own files (such as .ota-release.json)`);
    }
  }
}

/** A symlink target is a name too: the same encoding and character rules apply. */
export function checkLinkTarget(raw: string, target: string, origin: EntryOrigin): void {
  if (target.includes(REPLACEMENT) || (origin === 'package' && CONTROL.test(target))) {
    throw new OtaError('PACKAGE_UNSAFE_LINK', `package symlink ${JSON.stringify(raw)} -> ${JSON.stringify(target)} is rejected: the target is not valid UTF-8 or contains a control character`, {
      details: { entry: raw, linkname: target },
    });
  }
  if (Buffer.byteLength(target, 'utf8') > MAX_PATH_BYTES) {
    throw new OtaError('PACKAGE_UNSAFE_LINK', `package symlink ${JSON.stringify(raw)} is rejected: its target is longer than ${MAX_PATH_BYTES} bytes`, {
      details: { entry: raw },
    });
  }
}

/** Group- or other-writable files and directories are refused; a symlink's own mode means nothing on Linux. */
export function checkEntryMode(raw: string, type: string, mode: number, origin: EntryOrigin): void {
  if (origin !== 'package' || type === 'symlink') return;
  if ((mode & GROUP_OTHER_WRITE) !== 0) {
    const octal = (mode & 0o7777).toString(8).padStart(4, '0');
    throw new OtaError(
      'PACKAGE_UNSAFE_MODE',
      `package ${type} ${JSON.stringify(raw)} has mode ${octal}, writable by group or other; a release runs as root, so packages may not contain group- or other-writable entries (rebuild it with ota-repo, which clears those bits, or chmod go-w)`,
      { details: { entry: raw, mode: mode & 0o7777 } },
    );
  }
}

function unsafeName(raw: string, why: string): OtaError {
  // JSON quoting: a name with a newline or escape sequence must not forge log lines.
  return new OtaError('PACKAGE_UNSAFE_PATH', `package entry ${JSON.stringify(raw.length > 300 ? `${raw.slice(0, 300)}…` : raw)} is rejected: ${why}`, {
    details: { entry: raw.length > 300 ? `${raw.slice(0, 300)}…` : raw },
  });
}
