/**
 * Development certificates (PRODUCT.md §6). WebTransport with `serverCertificateHashes` accepts
 * only an ECDSA (here P-256) X.509v3 certificate valid for at most 14 days, so one is generated on
 * first start, reused while more than 2 days remain, and renewed after that. Its SHA-256 (of the
 * DER) is what the server publishes to WebTransport clients. A user may supply their own instead.
 */
import { createHash, webcrypto, X509Certificate as NodeX509, createPrivateKey } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
// @peculiar/x509 resolves its ASN.1 schemas through tsyringe, which needs the Reflect metadata API.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';

const DAY_MS = 24 * 60 * 60 * 1000;
/** Chromium refuses serverCertificateHashes certificates valid for more than 14 days. */
export const MAX_VALIDITY_DAYS = 14;
const DEFAULT_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'generated');

export interface CertificateBundle {
  certPem: string;
  /** PKCS#8 PEM. */
  keyPem: string;
  certDer: Uint8Array;
  /** SHA-256 of the DER certificate: the `serverCertificateHashes` value. */
  sha256: Uint8Array<ArrayBuffer>;
  sha256Hex: string;
  notBefore: Date;
  notAfter: Date;
}

export interface LoadedCertificate extends CertificateBundle {
  source: 'generated' | 'reused' | 'supplied';
}

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

/**
 * Creates a self-signed ECDSA P-256 certificate for localhost, 127.0.0.1 and ::1. Validity starts
 * an hour in the past (clock skew) and lasts `validityDays` in total (default 13, at most 14).
 */
export async function createCertificate(options: { validityDays?: number; now?: Date; hosts?: string[] } = {}): Promise<CertificateBundle> {
  const validityDays = options.validityDays ?? 13;
  if (!(validityDays > 0 && validityDays <= MAX_VALIDITY_DAYS)) {
    throw new RangeError(`validityDays must be in (0, ${MAX_VALIDITY_DAYS}]: WebTransport rejects longer certificates (got ${validityDays})`);
  }
  const notBefore = new Date((options.now ?? new Date()).getTime() - 60 * 60 * 1000);
  const notAfter = new Date(notBefore.getTime() + validityDays * DAY_MS);
  const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify'])) as CryptoKeyPair;
  const names: x509.JsonGeneralName[] = [
    { type: 'dns', value: 'localhost' },
    { type: 'ip', value: '127.0.0.1' },
    { type: 'ip', value: '::1' },
    ...(options.hosts ?? []).map((host): x509.JsonGeneralName => ({ type: /^[\d.]+$|:/.test(host) ? 'ip' : 'dns', value: host })),
  ];
  const serial = webcrypto.getRandomValues(new Uint8Array(16));
  serial[0]! &= 0x7f; // a positive serial
  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: Buffer.from(serial).toString('hex'),
    name: 'CN=localhost',
    notBefore,
    notAfter,
    keys,
    signingAlgorithm: algorithm,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(names),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  const keyPem = x509.PemConverter.encode(pkcs8, 'PRIVATE KEY');
  return bundleFrom(certificate.toString('pem'), keyPem);
}

/**
 * The server's certificate: the user's files when given; otherwise the one in `dir` while more
 * than `renewWhenLessThanMs` (default 2 days) of validity remain; otherwise a new one, written there.
 */
export async function loadOrCreateCertificate(
  options: { dir?: string; certFile?: string; keyFile?: string; renewWhenLessThanMs?: number; now?: Date } = {},
): Promise<LoadedCertificate> {
  if (options.certFile || options.keyFile) {
    if (!options.certFile || !options.keyFile) throw new Error('a supplied certificate needs both certFile and keyFile');
    const [certPem, keyPem] = await Promise.all([readFile(options.certFile, 'utf8'), readFile(options.keyFile, 'utf8')]);
    try {
      return { ...bundleFrom(certPem, keyPem), source: 'supplied' };
    } catch (cause) {
      throw new Error(`the supplied certificate or key is unusable (${options.certFile}, ${options.keyFile})`, { cause });
    }
  }
  const dir = options.dir ?? DEFAULT_DIR;
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  const now = options.now ?? new Date();
  const renewBefore = options.renewWhenLessThanMs ?? 2 * DAY_MS;
  try {
    const existing = bundleFrom(await readFile(certFile, 'utf8'), await readFile(keyFile, 'utf8'));
    if (existing.notAfter.getTime() - now.getTime() > renewBefore && existing.notBefore <= now) return { ...existing, source: 'reused' };
  } catch {
    // Missing or corrupt: generate below.
  }
  const fresh = await createCertificate({ now });
  await mkdir(dir, { recursive: true });
  await writeFile(keyFile, fresh.keyPem, { mode: 0o600 });
  await writeFile(certFile, fresh.certPem);
  return { ...fresh, source: 'generated' };
}

/** A certificate given as PEM text (a CA-signed one, say); throws when the key does not match. */
export function certificateFromPem(certPem: string, keyPem: string): CertificateBundle {
  return bundleFrom(certPem, keyPem);
}

/** Parses and cross-checks a PEM certificate and key; throws when they don't belong together. */
function bundleFrom(certPem: string, keyPem: string): CertificateBundle {
  const certificate = new NodeX509(certPem);
  if (!certificate.checkPrivateKey(createPrivateKey(keyPem))) throw new Error('the key does not match the certificate');
  const certDer = new Uint8Array(certificate.raw);
  const digest = createHash('sha256').update(certDer).digest();
  return {
    certPem,
    keyPem,
    certDer,
    sha256: new Uint8Array(digest),
    sha256Hex: digest.toString('hex'),
    notBefore: new Date(certificate.validFrom),
    notAfter: new Date(certificate.validTo),
  };
}
