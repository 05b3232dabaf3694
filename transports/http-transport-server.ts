/**
 * The server side of the Transport contract that needs Node's HTTP types: a transport living on
 * the shared HTTP(S) server. Apart from transport.ts so that file stays browser-safe.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TransportServer } from './transport.ts';

/**
 * A server transport that lives on the shared HTTP(S) server (websocket, long-polling, polling).
 * The HTTP server offers each request and upgrade to every transport in turn; the first that
 * returns true owns it.
 */
export interface HttpTransportServer extends TransportServer {
  /** URL path prefix this transport answers, e.g. `/ws`, `/lp`, `/poll`. */
  readonly path: string;
  handleRequest?(request: IncomingMessage, response: ServerResponse): boolean;
  handleUpgrade?(request: IncomingMessage, socket: Duplex, head: Buffer): boolean;
}
