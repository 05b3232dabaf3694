/**
 * The `websocket` client in Node: the shared client over `ws`'s WebSocket class (the browser API),
 * configured for TLS (a CA to trust, e.g. the self-signed development certificate).
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket } from 'ws';
import type { ClientTransportOptions, Connection } from '../transport.ts';
import { connectWebSocket, type WebSocketConstructor } from './client.ts';

export interface NodeWebSocketOptions extends ClientTransportOptions {
  /** Verify the server's certificate (default true). False accepts any certificate: development only. */
  rejectUnauthorized?: boolean;
  /** PEM certificate(s) to trust for wss://, e.g. the server's self-signed certificate. */
  ca?: string;
  /** Path of the WebSocket endpoint. Default `/ws`. */
  path?: string;
}

/** Opens a `websocket` client connection from Node. */
export function connectWebSocketNode(options: NodeWebSocketOptions): Connection {
  const tls = {
    ...(options.rejectUnauthorized === undefined ? {} : { rejectUnauthorized: options.rejectUnauthorized }),
    ...(options.ca === undefined ? {} : { ca: options.ca }),
  };
  class NodeWebSocket extends WebSocket {
    /** The upgraded TCP (or TLS) socket: corked while a flush writes, so a batch is one write. */
    #socket: Duplex | undefined;
    constructor(url: string, protocols?: string | string[]) {
      // The server never negotiates compression: don't offer it.
      super(url, protocols, { ...tls, perMessageDeflate: false });
      this.once('upgrade', (response: IncomingMessage) => void (this.#socket = response.socket));
    }
    cork(): void {
      this.#socket?.cork();
    }
    uncork(): void {
      this.#socket?.uncork();
    }
  }
  // ws implements the browser's WebSocket API; only its event typings differ from the DOM's.
  return connectWebSocket({ binaryType: 'nodebuffer', ...options, WebSocket: NodeWebSocket as unknown as WebSocketConstructor });
}
