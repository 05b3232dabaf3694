/**
 * WebTransport client for Node with the W3C shape: `new WebTransport(url, { serverCertificateHashes })`.
 * As in Chromium, with `serverCertificateHashes` the server is trusted by the SHA-256 of its DER
 * certificate; without them, by normal TLS validation: a chain to a trusted CA (`ca`, else Node's
 * bundled root certificates) and a certificate for the URL's host. The streams and datagrams exist
 * at once (as in the browser) and attach to the session when it is ready.
 */
import { createHash } from 'node:crypto';
import { rootCertificates } from 'node:tls';
import { H3Connection } from './h3-connection.ts';
import { H3ErrorCode } from '../h3/errors.ts';
import { Setting } from '../h3/frames.ts';
import { QuicEndpoint, quicConfig, udpPayloadFor } from './quic.ts';
import type { BidirectionalStream, DirectStream, DirectStreamSink } from '../direct-stream.ts';
import type { WebTransportSessionLike } from '../connection.ts';
import type { WebTransportCloseInfo, WebTransportSession } from './session.ts';

export interface WebTransportOptions {
  serverCertificateHashes?: { algorithm: string; value: BufferSource }[];
  /** CA certificates (PEM) to trust when no hashes are given. Default: Node's bundled root certificates. */
  ca?: string;
  /** Sent as the `origin` header (browsers always send one). */
  origin?: string;
  /** QUIC idle timeout, which also bounds the handshake (ms). Default 10 000. */
  idleTimeoutMs?: number;
  /**
   * Sends a QUIC PING after this long without sending (ms; 0: never). Default 1 000: a client
   * that only receives still learns within about this long that the server is gone (ICMP port
   * unreachable) or restarted (stateless reset), not only at the idle timeout.
   */
  keepAliveMs?: number;
}

/** QUIC carries a TLS alert as the error code 0x100 + alert (RFC 9001 §4.8). */
const CRYPTO_ERROR = 0x100;
const TLS_ALERTS: Record<number, string> = { 42: 'bad_certificate', 45: 'certificate_expired', 46: 'certificate_unknown', 48: 'unknown_ca' };

/** Why our side's TLS refused the server (a certificate that did not verify), or null. */
function tlsRefusal(info: { local: boolean; code: number; isApp: boolean } | null, host: string): string | null {
  if (!info || !info.local || info.isApp || info.code < CRYPTO_ERROR || info.code > CRYPTO_ERROR + 0xff) return null;
  const alert = info.code - CRYPTO_ERROR;
  return `TLS refused the server certificate for ${host} (alert ${alert}${TLS_ALERTS[alert] ? ` ${TLS_ALERTS[alert]}` : ''}): it is not signed by a trusted CA, or not for this host`;
}

function bytesOf(source: BufferSource): Uint8Array {
  return source instanceof Uint8Array ? source : ArrayBuffer.isView(source) ? new Uint8Array(source.buffer, source.byteOffset, source.byteLength) : new Uint8Array(source);
}

/** A readable whose source is only known later: reads pass through once it is. */
function deferredReadable<T>(source: Promise<ReadableStream<T>>): ReadableStream<T> {
  source.catch(() => undefined); // a failed session surfaces through ready/closed; reads reject too
  let reader: ReadableStreamDefaultReader<T> | undefined;
  return new ReadableStream<T>(
    {
      async pull(controller) {
        reader ??= (await source).getReader();
        const { value, done } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      },
      async cancel(reason) {
        await (reader ?? (await source).getReader()).cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

export class WebTransport implements WebTransportSessionLike {
  readonly ready: Promise<void>;
  readonly closed: Promise<WebTransportCloseInfo>;
  /** Resolves when the server asks to wind down (GOAWAY or DRAIN_WEBTRANSPORT_SESSION). */
  readonly draining: Promise<void>;
  readonly datagrams: { readonly readable: ReadableStream<Uint8Array>; readonly writable: WritableStream<Uint8Array>; readonly maxDatagramSize: number };
  readonly incomingBidirectionalStreams: ReadableStream<BidirectionalStream>;
  readonly incomingUnidirectionalStreams: ReadableStream<ReadableStream<Uint8Array>>;
  readonly #session: Promise<WebTransportSession>;
  #current: WebTransportSession | undefined;

  constructor(url: string, options: WebTransportOptions = {}) {
    this.#session = this.#open(new URL(url), options);
    this.#session.then((session) => (this.#current = session)).catch(() => undefined);
    this.ready = this.#session.then((session) => session.ready);
    this.closed = this.#session.then((session) => session.closed);
    this.draining = this.#session.then((session) => session.draining);
    this.draining.catch(() => undefined);
    this.ready.catch(() => undefined);
    this.closed.catch(() => undefined);
    const session = this.#session;
    const self = this;
    this.datagrams = {
      readable: deferredReadable(session.then((s) => s.datagrams.readable)),
      writable: new WritableStream<Uint8Array>({
        // Straight to the session once it exists: no second stream's queue and promises per datagram.
        write(chunk) {
          const current = self.#current;
          if (current) current.sendDatagram(chunk);
          else return session.then((s) => void s.sendDatagram(chunk));
        },
      }),
      get maxDatagramSize() {
        return self.#current?.datagrams.maxDatagramSize ?? 1200;
      },
    };
    this.incomingBidirectionalStreams = deferredReadable(session.then((s) => s.incomingBidirectionalStreams));
    this.incomingUnidirectionalStreams = deferredReadable(session.then((s) => s.incomingUnidirectionalStreams));
  }

  /** The session's direct datagram path (see WebTransportSession.onDatagram): set it once `ready`. */
  get onDatagram(): ((payload: Uint8Array) => void) | undefined {
    return this.#current?.onDatagram;
  }
  set onDatagram(handler: ((payload: Uint8Array) => void) | undefined) {
    if (!this.#current) throw new Error('onDatagram is set once the session is ready');
    this.#current.onDatagram = handler;
  }

  /** Sends one datagram now (the direct path beside `datagrams.writable`); false when dropped or not ready. */
  sendDatagram(payload: Uint8Array): boolean {
    return this.#current?.sendDatagram(payload) ?? false;
  }

  /** The session's direct path for a stream this side opens (see WebTransportSession): once `ready`. */
  openDirectStream(sink: DirectStreamSink): DirectStream {
    if (!this.#current) throw new Error('a direct stream is opened once the session is ready');
    return this.#current.openDirectStream(sink);
  }

  /** The session's direct path for the streams the server opens (none come before `ready`). */
  acceptDirectStreams(accept: (stream: DirectStream) => DirectStreamSink): void {
    this.#session.then((session) => session.acceptDirectStreams(accept)).catch(() => undefined);
  }

  async createBidirectionalStream(): Promise<BidirectionalStream> {
    await this.ready;
    return (await this.#session).createBidirectionalStream();
  }

  async createUnidirectionalStream(): Promise<WritableStream<Uint8Array>> {
    await this.ready;
    return (await this.#session).createUnidirectionalStream();
  }

  close(info: { closeCode?: number; reason?: string } = {}): void {
    void this.#session.then((session) => session.close(info)).catch(() => undefined);
  }

  getStats(): ReturnType<WebTransportSession['getStats']> | undefined {
    return this.#current?.getStats();
  }

  async #open(url: URL, options: WebTransportOptions): Promise<WebTransportSession> {
    if (url.protocol !== 'https:') throw new TypeError(`WebTransport needs an https: URL, got ${url.protocol}`);
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const address = host === 'localhost' ? '127.0.0.1' : host;
    const port = Number(url.port || 443);
    const wanted = (options.serverCertificateHashes ?? []).filter((h) => h.algorithm === 'sha-256').map((h) => Buffer.from(bytesOf(h.value)).toString('hex'));
    // No hashes: the TLS handshake verifies the chain, and quiche has BoringSSL check the host name it connects to.
    const caPem = wanted.length > 0 ? undefined : (options.ca ?? rootCertificates.join('\n'));
    const config = quicConfig('client', { idleTimeoutMs: options.idleTimeoutMs ?? 10_000, maxUdpPayload: udpPayloadFor(address), ...(caPem === undefined ? {} : { caPem }) });
    const endpoint = new QuicEndpoint('client', config, address.includes(':') ? 'udp6' : 'udp4');
    await endpoint.bind(0, address.includes(':') ? '::' : '0.0.0.0');
    await endpoint.connectSocket({ host: address, port });
    const quic = endpoint.connect({ host: address, port }, host);
    let refusal: string | null = null;
    let connection!: H3Connection;
    const established = new Promise<void>((resolve, reject) => {
      const h3 = new H3Connection(quic, 'client', {
        verifyPeer: () => {
          // Verified by the TLS handshake already (chain and host name), or here by its hash.
          if (caPem !== undefined) return null;
          const certificate = quic.quiche.peerCertChain()?.[0];
          const hash = certificate ? createHash('sha256').update(certificate).digest('hex') : '';
          refusal = wanted.includes(hash) ? null : `server certificate (sha-256 ${hash || 'none'}) matches none of serverCertificateHashes`;
          return refusal;
        },
        established: () => resolve(),
        closed: (info) => {
          reject(quic.failure ?? new Error(refusal ?? tlsRefusal(info, host) ?? 'QUIC connection closed before the session opened (no server, or handshake failed)'));
          void endpoint.close();
        },
      });
      quic.handler = h3;
      connection = h3;
    });
    quic.start();
    const keepAliveMs = options.keepAliveMs ?? 1_000;
    if (keepAliveMs > 0) {
      const keepAlive = setInterval(() => (quic.isClosed ? clearInterval(keepAlive) : quic.keepAlive()), keepAliveMs);
      keepAlive.unref();
    }
    await established;
    const settings = await connection.peerSettings();
    if (settings.get(Setting.ENABLE_WEBTRANSPORT_DRAFT02) !== 1 && !((settings.get(Setting.WEBTRANSPORT_MAX_SESSIONS_DRAFT07) ?? 0) >= 1)) {
      quic.close(true, H3ErrorCode.REQUEST_REJECTED, 'server does not offer WebTransport');
      throw new Error('server does not offer WebTransport');
    }
    const session = connection.connect(url.host, url.pathname + url.search, options.origin);
    // When the session ends, the QUIC connection has nothing left to carry.
    session.closed.then(
      () => setTimeout(() => quic.close(true, H3ErrorCode.NO_ERROR, ''), 20),
      () => quic.close(true, H3ErrorCode.NO_ERROR, ''),
    );
    return session;
  }
}
