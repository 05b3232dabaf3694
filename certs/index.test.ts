import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { createCertificate, loadOrCreateCertificate } from './index.ts';

const DAY = 24 * 60 * 60 * 1000;
const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'switchyard-certs-'));
  dirs.push(dir);
  return dir;
}
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

describe('createCertificate', () => {
  it('makes an ECDSA P-256 X.509v3 certificate for localhost, 127.0.0.1 and ::1, valid ≤ 14 days from an hour ago', async () => {
    const now = new Date();
    const bundle = await createCertificate({ now });
    const certificate = new X509Certificate(bundle.certPem);
    expect(certificate.publicKey.asymmetricKeyType).toBe('ec');
    expect(certificate.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(certificate.subjectAltName).toContain('DNS:localhost');
    expect(certificate.subjectAltName).toContain('IP Address:127.0.0.1');
    expect(certificate.subjectAltName).toMatch(/IP Address:(0:0:0:0:0:0:0:1|::1)/);
    expect(certificate.ca).toBe(false);
    const from = new Date(certificate.validFrom).getTime();
    const to = new Date(certificate.validTo).getTime();
    expect(to - from).toBeLessThanOrEqual(14 * DAY);
    expect(now.getTime() - from).toBeGreaterThan(50 * 60 * 1000);
    expect(certificate.checkPrivateKey(createPrivateKey(bundle.keyPem))).toBe(true);
    expect(bundle.sha256Hex).toBe(createHash('sha256').update(certificate.raw).digest('hex'));
    expect(Buffer.from(bundle.certDer).equals(certificate.raw)).toBe(true);
  });

  it('refuses validity over 14 days', async () => {
    await expect(createCertificate({ validityDays: 15 })).rejects.toThrow(RangeError);
  });

  it('serves TLS that a client trusting it verifies for 127.0.0.1', async () => {
    const bundle = await createCertificate();
    const server = tls.createServer({ cert: bundle.certPem, key: bundle.keyPem }, (socket) => socket.end('hi'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    const greeting = await new Promise<string>((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port, ca: bundle.certPem }, () => undefined);
      socket.on('data', (data) => resolve(data.toString()));
      socket.on('error', reject);
    });
    expect(greeting).toBe('hi');
    server.close();
  });
});

describe('loadOrCreateCertificate', () => {
  it('generates on first use, reuses while valid, renews when fewer than 2 days remain', async () => {
    const dir = await tempDir();
    const first = await loadOrCreateCertificate({ dir });
    expect(first.source).toBe('generated');
    expect((await stat(path.join(dir, 'key.pem'))).mode & 0o777).toBe(0o600);
    const again = await loadOrCreateCertificate({ dir });
    expect(again.source).toBe('reused');
    expect(again.sha256Hex).toBe(first.sha256Hex);
    const nearExpiry = new Date(first.notAfter.getTime() - 1.5 * DAY);
    const renewed = await loadOrCreateCertificate({ dir, now: nearExpiry });
    expect(renewed.source).toBe('generated');
    expect(renewed.sha256Hex).not.toBe(first.sha256Hex);
  });

  it('replaces corrupt files', async () => {
    const dir = await tempDir();
    await loadOrCreateCertificate({ dir });
    await writeFile(path.join(dir, 'cert.pem'), 'not a certificate');
    const replaced = await loadOrCreateCertificate({ dir });
    expect(replaced.source).toBe('generated');
    expect(await readFile(path.join(dir, 'cert.pem'), 'utf8')).toContain('BEGIN CERTIFICATE');
  });

  it('uses supplied files as they are, and names unusable ones', async () => {
    const dir = await tempDir();
    const own = await createCertificate();
    await writeFile(path.join(dir, 'mine.pem'), own.certPem);
    await writeFile(path.join(dir, 'mine.key'), own.keyPem);
    const supplied = await loadOrCreateCertificate({ certFile: path.join(dir, 'mine.pem'), keyFile: path.join(dir, 'mine.key') });
    expect(supplied.source).toBe('supplied');
    expect(supplied.sha256Hex).toBe(own.sha256Hex);
    const other = await createCertificate();
    await writeFile(path.join(dir, 'other.key'), other.keyPem);
    await expect(loadOrCreateCertificate({ certFile: path.join(dir, 'mine.pem'), keyFile: path.join(dir, 'other.key') })).rejects.toThrow(/unusable/);
  });
});
