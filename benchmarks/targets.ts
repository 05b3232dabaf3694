/**
 * What a workload drives: one uniform client over every system under test — Switchyard on each
 * transport (plain and TLS), raw `ws` served naively and tuned, Socket.IO over websocket and
 * polling. Each offers send-to-self through the server and topic fan-out, the two operations every
 * workload is built from, so the workloads are identical across systems.
 *
 * Client write policy, the same for every row: each message is handed to the socket on its own
 * (one write per message, nothing corked or batched by the load generator). Our Node client corks
 * its flushes, so its WebSocket here is `ws` without the cork hook; `ws` and Socket.IO clients
 * write per message anyway. The `websocket` rows use a bare `ws` client speaking our envelope
 * protocol, the very client of the ws rows, so those comparisons are between servers.
 */
import http from 'node:http';
import https from 'node:https';
import { io, type Socket } from 'socket.io-client';
import WebSocket from 'ws';
import type { Delivery } from '../transports/client.ts';
import { decodeEnvelope, encodeEnvelope, type ClientCommand } from '../transports/codec/envelope.ts';
import { createClient as createWebRtcClient, webrtc } from '../transports/node-webrtc.ts';
import { createClient } from '../transports/node-webtransport.ts';
import type { ClientTransportOptions, Connection, Lane, TransportName } from '../transports/transport.ts';
import type { WebRtcConnection } from '../transports/webrtc/connection.ts';
import { connectWebSocket, type WebSocketConstructor } from '../transports/websocket/client.ts';
import { RawOp, rawPayload, rawPublishFrame, rawTopic, type ServerKind } from './raw-protocol.ts';

/** The load generator's write policy, stated in every report. */
export const CLIENT_WRITE_POLICY = 'one write per message on every client: nothing corked or batched by the load generator';

export interface BenchClient {
  /** Sends `payload` to this client itself through the server (an echo). */
  sendToSelf(payload: Uint8Array): void;
  /** Called with each payload this client sent to itself, as it comes back. */
  onEcho(listener: (payload: Uint8Array) => void): void;
  subscribe(topic: string): Promise<void>;
  publish(topic: string, payload: Uint8Array): void;
  /** Called with each published payload this client receives, and its topic. */
  onPublished(listener: (payload: Uint8Array, topic: string) => void): void;
  /** Sends one message and resolves on the server's receipt; absent where the system has no receipts. */
  acked?(payload: Uint8Array): Promise<void>;
  /** Bytes this client's connection sent and received on the wire, where the stack counts them (QUIC; WebRTC's getStats, asynchronous). */
  wireBytes?(): WireCount | null | Promise<WireCount | null>;
  close(): void;
}

export interface WireCount {
  sent: number;
  received: number;
}

export interface Target {
  /** Row label, e.g. `websocket+tls`, `ws-tuned`, `socket.io-polling-keepalive`. */
  readonly name: string;
  readonly server: ServerKind;
  readonly tls: boolean;
  /** What kind of peer this is, for readers: `naive` is how most users write it, `tuned` as its docs advise. */
  readonly variant?: 'naive' | 'tuned';
  /** One line on what this row is. */
  readonly description: string;
  /** The lane every message goes on (Switchyard targets); unreliable lanes may lose and reorder messages. */
  readonly lane?: Lane;
  /** The only workloads this row runs (report.ts's Workload names), and why (the others are skipped with `reason`). */
  readonly only?: { workloads: readonly string[]; reason: string };
  connect(endpoint: { port: number; certPem: string | null; ports?: number[] }): Promise<BenchClient>;
}

/** Our `websocket` client over plain `ws` (no cork hook): it then writes each message as it is sent. */
function perMessageWebSocket(options: ClientTransportOptions & { ca?: string }) {
  const tls = options.ca === undefined ? {} : { ca: options.ca };
  class PlainWebSocket extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols, { ...tls, perMessageDeflate: false });
    }
  }
  return connectWebSocket({ binaryType: 'nodebuffer', ...options, WebSocket: PlainWebSocket as unknown as WebSocketConstructor });
}

/** Switchyard through our Node client (`createClient`), as an application runs it. */
function switchyard(transport: TransportName, tls: boolean, lane: Lane = 'reliable'): Target {
  return {
    name: `${transport}${transport === 'websocket' ? '-node' : ''}${tls ? '+tls' : ''}${lane === 'reliable' ? '' : `:${lane.split(':')[0]}`}`,
    server: 'switchyard',
    tls,
    lane,
    description: `Switchyard ${transport}${tls ? ' over TLS' : ''}${transport === 'webrtc' ? ' (data channels, DTLS always; signalling over plain HTTP; wrtc on both sides)' : ''} through our Node client${lane === 'reliable' ? '' : `, every message on the ${lane.split(':')[0]} lane`}`,
    async connect({ port, certPem }) {
      const client = createClient({
        url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`,
        transports: transport,
        reconnect: false,
        transportOptions: tls ? { ca: certPem ?? undefined } : {},
        connectors: { websocket: perMessageWebSocket, webrtc },
      });
      let echoed: (payload: Uint8Array) => void = () => undefined;
      let published: (payload: Uint8Array, topic: string) => void = () => undefined;
      client.on('message', (delivery: Delivery) => {
        if (delivery.kind === 'send') echoed(delivery.data as Uint8Array);
        else if (delivery.kind === 'topic') published(delivery.data as Uint8Array, delivery.to!);
      });
      await client.connect();
      const self = client.id!;
      return {
        sendToSelf: (payload) => void client.send(self, payload, { lane }),
        onEcho: (listener) => void (echoed = listener),
        subscribe: (topic) => client.subscribe(topic),
        publish: (topic, payload) => void client.publish(topic, payload, { lane }),
        onPublished: (listener) => void (published = listener),
        // A publish to a topic nobody follows: the receipt is the whole round trip.
        acked: (payload) => client.publish('receipts', payload, { ack: true, lane }).then(() => undefined),
        wireBytes: () => {
          if (transport === 'webrtc') return webRtcWireBytes(client.connection);
          const stats = client.stats();
          return transport === 'webtransport' && stats?.wireBytesOut != null && stats.wireBytesIn != null ? { sent: stats.wireBytesOut, received: stats.wireBytesIn } : null;
        },
        close: () => client.close(),
      };
    },
  };
}

/**
 * UDP payload bytes of a webrtc connection's selected ICE transport (DTLS, SCTP and STUN consent
 * included), read fresh from getStats(): the connection's own stats() answers from a sample up to
 * a second old.
 */
async function webRtcWireBytes(connection: Connection | undefined): Promise<WireCount | null> {
  const peer = (connection as WebRtcConnection | undefined)?.peerConnection;
  if (!peer) return null;
  let count: WireCount | null = null;
  (await peer.getStats()).forEach((entry: { type: string; bytesSent?: number; bytesReceived?: number }) => {
    if (entry.type === 'transport' && entry.bytesSent !== undefined && entry.bytesReceived !== undefined) count = { sent: entry.bytesSent, received: entry.bytesReceived };
  });
  return count;
}

/** What the peer-to-peer rows run: round trips between two clients, nothing a single client does. */
const PAIR_WORKLOADS = { workloads: ['echo', 'throughput'] as const, reason: 'a pair of clients echoing to each other: it runs the round-trip workloads (echo, throughput) only' };

/**
 * Two Node clients of one server, both on `webrtc` (wrtc), B returning every message of A's as it
 * comes, on the same lane and the same client write policy: `p2p` over `A.peer(B)` (the server
 * relays the offer and answer, then is out of the path), `relayed` through the server
 * (A → server → B → server → A), the path the direct connection saves. Both clients live in the
 * load generator, so B's turn-around costs the same on both rows.
 */
function webRtcPair(path: 'p2p' | 'relayed'): Target {
  return {
    name: `webrtc-${path}`,
    server: 'switchyard',
    tls: false,
    only: PAIR_WORKLOADS,
    description:
      path === 'p2p'
        ? 'two Node clients on webrtc, A → B → A straight over client.peer() (data channel between the clients; the server only signalled)'
        : 'two Node clients on webrtc, A → server → B → server → A (the relay client.peer() avoids)',
    async connect({ port }) {
      const open = () => createWebRtcClient({ url: `http://127.0.0.1:${port}`, transports: 'webrtc', reconnect: false });
      const [a, b] = [open(), open()];
      try {
        await Promise.all([a.connect(), b.connect()]);
        let echoed: (payload: Uint8Array) => void = () => undefined;
        if (path === 'relayed') {
          b.on('message', (delivery: Delivery) => {
            if (delivery.kind === 'send' && delivery.from === a.id) void b.send(a.id!, delivery.data, { lane: 'reliable' });
          });
          a.on('message', (delivery: Delivery) => {
            if (delivery.kind === 'send' && delivery.from === b.id) echoed(delivery.data as Uint8Array);
          });
          return {
            sendToSelf: (payload) => void a.send(b.id!, payload, { lane: 'reliable' }),
            onEcho: (listener) => void (echoed = listener),
            ...noPubSub,
            close: () => {
              a.close();
              b.close();
            },
          };
        }
        const answered = new Promise<Connection>((resolve) => b.on('peer', (connection) => resolve(connection)));
        const toB = await a.peer(b.id!);
        const toA = await answered;
        toA.on('message', (message, lane) => void toA.send(message, lane));
        toB.on('message', (message) => echoed(message as Uint8Array));
        return {
          sendToSelf: (payload) => void toB.send(payload, 'reliable'),
          onEcho: (listener) => void (echoed = listener),
          ...noPubSub,
          close: () => {
            toB.close();
            toA.close();
            a.close();
            b.close();
          },
        };
      } catch (error) {
        a.close();
        b.close();
        throw error;
      }
    },
  };
}

/** The pair rows run no pub/sub workload (see PAIR_WORKLOADS). */
const noPubSub = {
  subscribe: () => Promise.reject(new Error('no topics on a client pair')),
  publish: () => {
    throw new Error('no topics on a client pair');
  },
  onPublished: () => undefined,
};

/**
 * Switchyard's `websocket` transport driven by a bare `ws` client speaking the envelope protocol:
 * the same client library, write policy and per-message work (one envelope encoded or decoded) as
 * the ws rows, so those rows compare servers, not clients. `websocket-node` rows use our Node client.
 */
function switchyardWire(tls: boolean): Target {
  return {
    name: `websocket${tls ? '+tls' : ''}`,
    server: 'switchyard',
    tls,
    description: `Switchyard websocket${tls ? ' over TLS' : ''}, driven by a bare ws client speaking the envelope protocol (the ws rows' client)`,
    connect: async ({ port, certPem }) => (await wireClient(port, certPem, tls)).client,
  };
}

/**
 * The `websocket` row's client against a cluster of two nodes sharing Redis: clients connect to
 * the nodes in turn (a fan-out's subscribers are split across them), and each client's echo
 * crosses nodes: it sends through its node to a second connection of its own on the other node.
 */
function switchyardCluster(): Target {
  let turn = 0;
  return {
    name: 'websocket@cluster',
    server: 'switchyard-cluster',
    tls: false,
    description: "Switchyard websocket on 2 nodes + Redis (this machine), the websocket row's bare ws client; an echo goes out through one node and back through the other",
    async connect({ port, ports, certPem }) {
      const nodes = ports ?? [port];
      const here = turn++ % nodes.length;
      const [out, back] = await Promise.all([wireClient(nodes[here]!, certPem, false), wireClient(nodes[(here + 1) % nodes.length]!, certPem, false)]);
      return { ...out.client, sendToSelf: (payload) => out.sendTo(back.id, payload), onEcho: back.client.onEcho, close: () => (out.client.close(), back.client.close()) };
    },
  };
}

/** A bare ws client of Switchyard's envelope protocol (websocket rows), with its client id and a send to any id. */
async function wireClient(port: number, certPem: string | null, tls: boolean): Promise<{ client: BenchClient; id: string; sendTo(id: string, payload: Uint8Array): void }> {
  const socket = new WebSocket(`${tls ? 'wss' : 'ws'}://127.0.0.1:${port}/ws`, { perMessageDeflate: false, ca: certPem ?? undefined });
  socket.binaryType = 'nodebuffer';
  let echoed: (payload: Uint8Array) => void = () => undefined;
  let published: (payload: Uint8Array, topic: string) => void = () => undefined;
  const acks = new Map<string, () => void>();
  let welcomed: (id: string) => void = () => undefined;
  const welcome = new Promise<string>((resolve) => void (welcomed = resolve));
  socket.on('message', (data: Buffer, isBinary: boolean) => {
    const envelope = decodeEnvelope(isBinary ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : data.toString());
    if (envelope.t === 'message') {
      if (envelope.kind === 'send') echoed(envelope.data as Uint8Array);
      else if (envelope.kind === 'topic') published(envelope.data as Uint8Array, envelope.to!);
    } else if (envelope.t === 'ack') {
      acks.get(envelope.id)?.();
      acks.delete(envelope.id);
    } else if (envelope.t === 'welcome') welcomed(envelope.clientId);
  });
  await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
  socket.send(encodeEnvelope({ t: 'hello' }));
  const self = await welcome;
  let nextId = 0;
  const acked = (command: ClientCommand) =>
    new Promise<void>((resolve) => {
      const id = `b${nextId++}`;
      acks.set(id, resolve);
      socket.send(encodeEnvelope({ ...command, id } as ClientCommand));
    });
  const sendTo = (to: string, payload: Uint8Array) => socket.send(encodeEnvelope({ t: 'send', to, data: payload }));
  const client: BenchClient = {
    sendToSelf: (payload) => sendTo(self, payload),
    onEcho: (listener) => void (echoed = listener),
    subscribe: (topic) => acked({ t: 'subscribe', topic }),
    publish: (topic, payload) => socket.send(encodeEnvelope({ t: 'publish', topic, data: payload })),
    onPublished: (listener) => void (published = listener),
    acked: (payload) => acked({ t: 'publish', topic: 'receipts', data: payload }),
    close: () => socket.close(),
  };
  return { client, id: self, sendTo };
}

/** A `ws` client of the one-byte raw protocol; `tuned` only changes the server it talks to. */
function rawWs(tls: boolean, tuned: boolean): Target {
  return {
    name: `ws${tuned ? '-tuned' : ''}${tls ? '+tls' : ''}`,
    server: tuned ? 'ws-tuned' : 'ws',
    tls,
    variant: tuned ? 'tuned' : 'naive',
    description: tuned
      ? 'raw ws server, tuned: socket corked for the event-loop turn, a fan-out framed once (WebSocket.Sender.frame) and that frame written to every subscriber'
      : 'raw ws server, naive: ws.send per message and per subscriber',
    async connect({ port, certPem }) {
      const socket = new WebSocket(`${tls ? 'wss' : 'ws'}://127.0.0.1:${port}`, { perMessageDeflate: false, ca: certPem ?? undefined });
      let echoed: (payload: Uint8Array) => void = () => undefined;
      let published: (payload: Uint8Array, topic: string) => void = () => undefined;
      socket.binaryType = 'nodebuffer';
      const subscribed: (() => void)[] = [];
      socket.on('message', (data: Buffer) => {
        if (data[0] === RawOp.echo) echoed(data);
        else if (data[0] === RawOp.publish) published(rawPayload(data), rawTopic(data));
        else if (data[0] === RawOp.subscribe) subscribed.shift()?.();
      });
      await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
      return {
        sendToSelf: (payload) => {
          payload[0] = RawOp.echo; // byte 0 is reserved by the workloads for this
          socket.send(payload);
        },
        onEcho: (listener) => void (echoed = listener),
        subscribe: (topic) =>
          new Promise<void>((resolve) => {
            subscribed.push(resolve);
            socket.send(Uint8Array.of(RawOp.subscribe, ...new TextEncoder().encode(topic)));
          }),
        publish: (topic, payload) => socket.send(rawPublishFrame(topic, payload)),
        onPublished: (listener) => void (published = listener),
        close: () => socket.close(),
      };
    },
  };
}

/**
 * Socket.IO 4. `keepAlive` gives the Node polling client a keep-alive agent (without one it opens a
 * connection, and under TLS a handshake, per request); `text` sends payloads as strings (one
 * packet) instead of bytes (a binary attachment is a second packet).
 */
function socketIo(transport: 'websocket' | 'polling', tls: boolean, options: { keepAlive?: boolean; text?: boolean } = {}): Target {
  const { keepAlive = false, text = false } = options;
  const name = `socket.io-${transport}${keepAlive ? '-keepalive' : ''}${text ? '-text' : ''}${tls ? '+tls' : ''}`;
  const naive = transport === 'polling' && !keepAlive;
  return {
    name,
    server: 'socketio',
    tls,
    ...(transport === 'polling' ? { variant: naive ? ('naive' as const) : ('tuned' as const) } : {}),
    description: `Socket.IO 4 over ${transport}${naive ? ', default Node client (a new connection per request)' : keepAlive ? ', keep-alive agent' : ''}, ${text ? 'string payloads (latin1, one packet)' : 'binary payloads (two packets each)'}`,
    async connect({ port, certPem }) {
      const ca = tls && certPem ? { ca: certPem } : {};
      const keepAliveAgent = keepAlive ? (tls ? new https.Agent({ keepAlive: true, ...ca }) : new http.Agent({ keepAlive: true })) : undefined;
      // socket.io-client types `agent` as string | boolean; engine.io-client hands it to Node's http(s).request.
      const agent = keepAliveAgent ? { agent: keepAliveAgent as unknown as string } : {};
      const socket: Socket = io(`${tls ? 'https' : 'http'}://127.0.0.1:${port}`, { transports: [transport], reconnection: false, forceNew: true, ...ca, ...agent });
      const encode = (payload: Uint8Array): Uint8Array | string => (text ? Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('latin1') : payload);
      const decode = (data: Uint8Array | string): Uint8Array => (typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
      let echoed: (payload: Uint8Array) => void = () => undefined;
      let published: (payload: Uint8Array, topic: string) => void = () => undefined;
      socket.on('echo', (data: Uint8Array | string) => echoed(decode(data)));
      socket.on('subscribed', () => subscribed.shift()?.());
      socket.on('message', (topic: string, data: Uint8Array | string) => published(decode(data), topic));
      const subscribed: (() => void)[] = [];
      await new Promise((resolve, reject) => socket.once('connect', () => resolve(undefined)).once('connect_error', reject));
      return {
        sendToSelf: (payload) => void socket.emit('echo', encode(payload)),
        onEcho: (listener) => void (echoed = listener),
        subscribe: (topic) =>
          new Promise<void>((resolve) => {
            subscribed.push(resolve);
            socket.emit('subscribe', topic);
          }),
        publish: (topic, payload) => void socket.emit('publish', topic, encode(payload)),
        onPublished: (listener) => void (published = listener),
        acked: (payload) => new Promise<void>((resolve) => socket.emit('acked', encode(payload), () => resolve())),
        close: () => {
          socket.close();
          keepAliveAgent?.destroy();
        },
      };
    },
  };
}

/** Every system under test, in report order. */
export const TARGETS: readonly Target[] = [
  switchyardWire(false),
  switchyardWire(true),
  switchyardCluster(),
  switchyard('websocket', false),
  switchyard('websocket', true),
  switchyard('long-polling', false),
  switchyard('long-polling', true),
  switchyard('polling', false),
  switchyard('polling', true),
  switchyard('webtransport', true),
  switchyard('webtransport', true, 'channel:bench'),
  switchyard('webtransport', true, 'unreliable'),
  switchyard('webrtc', false),
  switchyard('webrtc', false, 'channel:bench'),
  switchyard('webrtc', false, 'unreliable'),
  webRtcPair('p2p'),
  webRtcPair('relayed'),
  rawWs(false, false),
  rawWs(true, false),
  rawWs(false, true),
  rawWs(true, true),
  socketIo('websocket', false),
  socketIo('websocket', true),
  socketIo('websocket', false, { text: true }),
  socketIo('websocket', true, { text: true }),
  socketIo('polling', false),
  socketIo('polling', true),
  socketIo('polling', false, { keepAlive: true }),
  socketIo('polling', true, { keepAlive: true }),
  socketIo('polling', false, { keepAlive: true, text: true }),
  socketIo('polling', true, { keepAlive: true, text: true }),
];
