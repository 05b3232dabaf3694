/**
 * The `webtransport` transport, client side, over a W3C `WebTransport` class: the browser's native
 * one, or our engine's Node client (see `node.ts`). Browser-safe: no Node imports.
 *
 * Where to connect and which certificate to trust: `GET {url}/info` on the server's HTTP port names
 * the WebTransport URL and the SHA-256 of its (≤ 14-day, P-256) certificate, which goes into
 * `serverCertificateHashes` exactly as Chromium requires. Both can be given instead.
 */
import type { Connection, ClientTransportOptions } from '../transport.ts';
import { WebTransportConnection, type WebTransportSessionLike } from './connection.ts';

/** A class with the W3C WebTransport constructor. */
export type WebTransportConstructor = new (
  url: string,
  options?: { serverCertificateHashes?: { algorithm: string; value: BufferSource }[] },
) => WebTransportSessionLike;

export interface WebTransportClientOptions extends ClientTransportOptions {
  /** WebTransport implementation; default `globalThis.WebTransport`. */
  WebTransport?: WebTransportConstructor;
  /** Session URL; default: from the server's `/info`. */
  webTransportUrl?: string;
  /** SHA-256 of the server certificate (hex); default: from the server's `/info`. */
  certificateSha256?: string;
  /** fetch for `/info` (Node passes one that trusts the server's certificate). Default global fetch. */
  fetch?: typeof fetch;
}

/** Server facts a WebTransport client needs, as `/info` publishes them. */
interface ServerInfo {
  urls: { webtransport: string | null };
  certificateSha256: string | null;
}

export function hexToBytes(hex: string): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(new ArrayBuffer(hex.length / 2));
  for (let i = 0; i < bytes.length; i++) bytes[i] = Number.parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return bytes;
}

async function openSession(options: WebTransportClientOptions): Promise<WebTransportSessionLike> {
  const WebTransportClass = options.WebTransport ?? (globalThis as { WebTransport?: WebTransportConstructor }).WebTransport;
  if (!WebTransportClass) throw new Error('this environment has no WebTransport');
  let url = options.webTransportUrl;
  let hash = options.certificateSha256;
  if (!url || !hash) {
    const response = await (options.fetch ?? fetch)(new URL('/info', options.url));
    if (!response.ok) throw new Error(`GET /info answered ${response.status}`);
    const info = (await response.json()) as ServerInfo;
    url ??= info.urls.webtransport ?? undefined;
    hash ??= info.certificateSha256 ?? undefined;
  }
  if (!url) throw new Error('the server offers no WebTransport endpoint');
  const serverCertificateHashes = hash ? [{ algorithm: 'sha-256', value: hexToBytes(hash) }] : undefined;
  return new WebTransportClass(url, serverCertificateHashes ? { serverCertificateHashes } : {});
}

/** Opens a `webtransport` client connection. */
export function connectWebTransport(options: WebTransportClientOptions): Connection {
  return new WebTransportConnection(openSession(options), { role: 'client', backpressure: options.backpressure, laneFallback: options.laneFallback });
}
