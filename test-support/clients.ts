/**
 * Node clients for tests that mix transports: a client with every transport (the opt-in
 * webtransport and webrtc entries included), clients that keep an inbox, and the end marker that
 * tells when everything a sender sent before it has arrived.
 */
import type { Delivery, SwitchyardClient } from '../transports/client.ts';
import type { NodeClientOptions } from '../transports/node-client.ts';
import { createClient as createWebRtcClient, webrtc } from '../transports/node-webrtc.ts';
import { nodeConnectors as webTransportConnectors, webtransport } from '../transports/node-webtransport.ts';
import type { TransportName } from '../transports/transport.ts';
import { waitFor } from './servers.ts';

/** Every Node connector. */
export const nodeConnectors = { ...webTransportConnectors, webrtc };
export const ALL_TRANSPORTS = Object.keys(nodeConnectors) as TransportName[];

/** A Node client that can use every transport, and `peer()`. */
export function createClient(options: NodeClientOptions): SwitchyardClient {
  return createWebRtcClient({ ...options, connectors: { webtransport, ...options.connectors } });
}

export interface Connected {
  client: SwitchyardClient;
  inbox: Delivery[];
}

/** Connects clients that record every delivery; `close()` closes all it connected. */
export class InboxClients {
  readonly #clients: SwitchyardClient[] = [];

  async connect(options: NodeClientOptions): Promise<Connected> {
    const client = createClient(options);
    const inbox: Delivery[] = [];
    client.on('message', (delivery) => inbox.push(delivery));
    this.#clients.push(client);
    await client.connect();
    return { client, inbox };
  }

  close(): void {
    for (const client of this.#clients.splice(0)) client.close();
  }
}

export const END_MARKER = 'end of this case';

/**
 * Sends an end marker from `sender` to itself and each peer, and waits until all have it: the
 * router handles a client's commands in order and each connection keeps order, so whatever the
 * sender's earlier commands delivered has arrived by then, and nothing more will.
 */
export async function endMarker(sender: Connected, peers: Connected[]): Promise<void> {
  const everyone = [sender, ...peers];
  await sender.client.multicast({ ids: everyone.map((p) => p.client.id!) }, END_MARKER, { ack: true });
  await waitFor(() => everyone.every((p) => p.inbox.some((d) => d.data === END_MARKER && d.from === sender.client.id)), 10_000, 'the end marker');
}

/** What `from` delivered to this inbox since `mark`, without end markers. */
export function sinceMark(inbox: Delivery[], mark: number, from: string): Delivery[] {
  return inbox.slice(mark).filter((d) => d.from === from && d.data !== END_MARKER);
}
