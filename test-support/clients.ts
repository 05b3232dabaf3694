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
import { expect } from 'vitest';
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

/**
 * The router's every-kind case, run on one server and across a cluster: peers at even indices join
 * a room, the others subscribe to a topic; `sender` broadcasts, sends bytes to the first peer,
 * multicasts to the room (asking recipients' receipts when `receipt`), publishes to the topic and
 * multicasts to the second peer and itself by id. Each peer must get exactly its share, and the
 * sender only the id-list multicast that named it. Returns what each peer got, and the room
 * multicast's id.
 */
export async function deliverEveryKind(sender: Connected, peers: Connected[], name: string, { receipt = false } = {}): Promise<{ got: Delivery[][]; roomMessageId: string | undefined }> {
  const room = `room-${name}`;
  const topic = `topic-${name}`;
  await Promise.all(peers.map((p, i) => (i % 2 === 0 ? p.client.join(room) : p.client.subscribe(topic))));
  const marks = peers.map((p) => p.inbox.length);
  const senderMark = sender.inbox.length;

  await sender.client.broadcast({ hello: 'everyone' }, { ack: true });
  await sender.client.send(peers[0]!.client.id!, Uint8Array.of(1, 2, 3), { ack: true });
  const roomMessageId = await sender.client.multicast({ room }, 'room only', { ack: true, receipt });
  await sender.client.publish(topic, { topic: true }, { ack: true });
  await sender.client.multicast({ ids: [peers[1]!.client.id!, sender.client.id!] }, 'ids', { ack: true });

  await endMarker(sender, peers);
  const got = peers.map((peer, i) => {
    const delivered = sinceMark(peer.inbox, marks[i]!, sender.client.id!);
    const kinds = delivered.map((d) => d.kind);
    expect(kinds.filter((k) => k === 'broadcast')).toHaveLength(1);
    expect(kinds.filter((k) => k === 'send')).toHaveLength(i === 0 ? 1 : 0);
    expect(kinds.filter((k) => k === 'room')).toHaveLength(i % 2 === 0 ? 1 : 0);
    expect(kinds.filter((k) => k === 'topic')).toHaveLength(i % 2 === 1 ? 1 : 0);
    expect(kinds.filter((k) => k === 'ids')).toHaveLength(i === 1 ? 1 : 0);
    const unicast = delivered.find((d) => d.kind === 'send');
    if (unicast) expect([...(unicast.data as Uint8Array)]).toEqual([1, 2, 3]);
    return delivered;
  });
  expect(sinceMark(sender.inbox, senderMark, sender.client.id!).map((d) => d.kind)).toEqual(['ids']);
  return { got, roomMessageId };
}
