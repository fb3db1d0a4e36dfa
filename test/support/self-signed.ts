/** A throwaway self-signed certificate for TLS tests on loopback, made by openssl. */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

/**
 * Writes `key.pem` and `cert.pem` into `dir`: an EC P-256 certificate valid for one day, for
 * `name` (a DNS name, or an IP address given as `IP:127.0.0.1`), which is also its own CA.
 */
export function selfSignedCertificate(dir: string, name: string): { keyFile: string; certFile: string } {
  const keyFile = join(dir, 'key.pem');
  const certFile = join(dir, 'cert.pem');
  const [kind, value] = name.startsWith('IP:') ? ['IP', name.slice(3)] : ['DNS', name];
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', `/CN=${value}`,
    '-addext', `subjectAltName=${kind}:${value}`,
  ], { stdio: 'ignore' });
  return { keyFile, certFile };
}
