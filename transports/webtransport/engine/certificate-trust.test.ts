/**
 * A server with a CA-signed certificate (90 days: too long for serverCertificateHashes, as
 * Chromium's rule is ≤ 14 days): the Node WebTransport client trusts it by normal TLS validation —
 * a chain to the CA it is given, and a certificate for the URL's host — and refuses it otherwise.
 * The CA and the certificate are made with openssl in a temporary folder.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type SwitchyardServer } from '../../../server/index.ts';
import type { Delivery } from '../../client.ts';
import { createClient } from '../../node-webtransport.ts';
import { WebTransport } from './client.ts';

let dir: string;
let caPem: string;
let server: SwitchyardServer;
let port: number;

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'switchyard-ca-'));
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '30', '-subj', '/CN=Switchyard test CA', '-keyout', 'ca.key', '-out', 'ca.pem');
  openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=localhost', '-keyout', 'leaf.key', '-out', 'leaf.csr');
  // Only the name localhost: a client reaching 127.0.0.1 gets a certificate that is not for that host.
  writeFileSync(path.join(dir, 'leaf.ext'), 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n');
  openssl('x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '90', '-extfile', 'leaf.ext', '-out', 'leaf.pem');
  caPem = readFileSync(path.join(dir, 'ca.pem'), 'utf8');
  server = await startServer({ port: 0, host: '127.0.0.1', certificate: { certFile: path.join(dir, 'leaf.pem'), keyFile: path.join(dir, 'leaf.key') }, publicHost: 'localhost', transports: ['websocket', 'webtransport'] });
  port = Number(new URL(server.urls.webtransport!).port);
});

afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** How a session attempt ended: 'ready', or the error it was refused with. */
async function attempt(url: string, options: ConstructorParameters<typeof WebTransport>[1]): Promise<string> {
  const transport = new WebTransport(url, options);
  try {
    await transport.ready;
    transport.close();
    return 'ready';
  } catch (error) {
    return String(error);
  }
}

describe('WebTransport from Node to a CA-signed certificate', () => {
  it('publishes no certificate hash for it', () => {
    expect(server.certificate!.notAfter.getTime() - server.certificate!.notBefore.getTime()).toBeGreaterThan(14 * 86_400_000);
  });

  it('connects with the CA given, and is refused without it or for another host name', async () => {
    expect(await attempt(`https://localhost:${port}/wt`, { ca: caPem })).toBe('ready');
    // Node's bundled roots do not know this CA.
    expect(await attempt(`https://localhost:${port}/wt`, {})).toMatch(/TLS refused the server certificate for localhost/);
    // The right CA, but the certificate names localhost only.
    expect(await attempt(`https://127.0.0.1:${port}/wt`, { ca: caPem })).toMatch(/TLS refused the server certificate for 127\.0\.0\.1/);
    // Another CA of the same name does not do.
    const stranger = path.join(dir, 'stranger');
    openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '30', '-subj', '/CN=Switchyard test CA', '-keyout', `${stranger}.key`, '-out', `${stranger}.pem`);
    expect(await attempt(`https://localhost:${port}/wt`, { ca: readFileSync(`${stranger}.pem`, 'utf8') })).toMatch(/TLS refused the server certificate for localhost/);
  });

  it('a Switchyard client with transportOptions.ca exchanges messages over it', async () => {
    const client = createClient({ url: `https://localhost:${server.port}`, transports: 'webtransport', reconnect: false, transportOptions: { ca: caPem } });
    try {
      const echoed = new Promise<Delivery>((resolve) => client.on('message', resolve));
      await client.connect();
      expect(client.transport).toBe('webtransport');
      await client.send(client.id!, 'over a CA-signed certificate', { ack: true });
      expect((await echoed).data).toBe('over a CA-signed certificate');
    } finally {
      client.close();
    }
  });
});
