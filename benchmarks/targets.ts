/**
 * What a workload drives: one uniform client over every system under test — Switchyard on each
 * transport (plain and TLS), raw `ws` (no abstraction), Socket.IO over websocket and polling. Each
 * offers echo-to-self through the server and topic fan-out, the two operations every workload
 * is built from, so the workloads are identical across systems.
 */
import { io, type Socket } from 'socket.io-client';
import WebSocket from 'ws';
import type { Delivery } from '../transports/client.ts';
import { createClient } from '../transports/node-webtransport.ts';
import type { Lane, TransportName } from '../transports/transport.ts';
import { RawOp, rawPayload, rawTopic, type ServerKind } from './raw-protocol.ts';

export interface BenchClient {
  /** Sends to itself through the server; resolves when it is back (FIFO: several may be in flight). */
  echo(payload: Uint8Array): Promise<void>;
  subscribe(topic: string): Promise<void>;
  publish(topic: string, payload: Uint8Array): void;
  /** Called with each published payload this client receives, and its topic. */
  onPublished(listener: (payload: Uint8Array, topic: string) => void): void;
  /** Sends one message and resolves on the server's receipt; absent where the system has no receipts. */
  acked?(payload: Uint8Array): Promise<void>;
  /** Bytes this client's connection sent and received on the wire, where the stack counts them (QUIC). */
  wireBytes?(): { sent: number; received: number } | null;
  close(): void;
}

export interface Target {
  /** Row label, e.g. `websocket+tls`, `ws`, `socket.io-polling`. */
  readonly name: string;
  readonly server: ServerKind;
  readonly tls: boolean;
  /** Why this target cannot run here, if it cannot. */
  readonly unavailable?: string;
  /** The lane every message goes on (Switchyard targets); unreliable lanes may lose messages. */
  readonly lane?: Lane;
  connect(endpoint: { port: number; certPem: string | null }): Promise<BenchClient>;
}

/** FIFO of echo promises: each transport keeps order, so the oldest waiter gets the next echo. */
function echoQueue() {
  const waiting: (() => void)[] = [];
  return {
    wait: () => new Promise<void>((resolve) => waiting.push(resolve)),
    arrived: () => waiting.shift()?.(),
  };
}

function switchyard(transport: TransportName, tls: boolean, lane: Lane = 'reliable'): Target {
  return {
    name: `${transport}${tls ? '+tls' : ''}${lane === 'reliable' ? '' : `:${lane.split(':')[0]}`}`,
    server: 'switchyard',
    tls,
    lane,
    async connect({ port, certPem }) {
      const client = createClient({
        url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`,
        transports: transport,
        reconnect: false,
        transportOptions: tls ? { ca: certPem ?? undefined } : {},
      });
      const echoes = echoQueue();
      let published: (payload: Uint8Array, topic: string) => void = () => undefined;
      client.on('message', (delivery: Delivery) => {
        if (delivery.kind === 'send') echoes.arrived();
        else if (delivery.kind === 'topic') published(delivery.data as Uint8Array, delivery.to!);
      });
      await client.connect();
      const self = client.id!;
      return {
        echo: (payload) => {
          const back = echoes.wait();
          void client.send(self, payload, { lane });
          return back;
        },
        subscribe: (topic) => client.subscribe(topic),
        publish: (topic, payload) => void client.publish(topic, payload, { lane }),
        onPublished: (listener) => void (published = listener),
        // A publish to a topic nobody follows: the receipt is the whole round trip.
        acked: (payload) => client.publish('receipts', payload, { ack: true, lane }).then(() => undefined),
        wireBytes: () => {
          const stats = client.stats();
          return transport === 'webtransport' && stats?.wireBytesOut != null && stats.wireBytesIn != null ? { sent: stats.wireBytesOut, received: stats.wireBytesIn } : null;
        },
        close: () => client.close(),
      };
    },
  };
}

function rawWs(tls: boolean): Target {
  return {
    name: `ws${tls ? '+tls' : ''}`,
    server: 'ws',
    tls,
    async connect({ port, certPem }) {
      const socket = new WebSocket(`${tls ? 'wss' : 'ws'}://127.0.0.1:${port}`, { perMessageDeflate: false, ca: certPem ?? undefined });
      const echoes = echoQueue();
      let published: (payload: Uint8Array, topic: string) => void = () => undefined;
      socket.binaryType = 'nodebuffer';
      socket.on('message', (data: Buffer) => {
        if (data[0] === RawOp.echo) echoes.arrived();
        else if (data[0] === RawOp.publish) published(rawPayload(data), rawTopic(data));
      });
      await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
      const send = (op: number, payload: Uint8Array) => {
        payload[0] = op; // byte 0 is reserved by the workloads for this
        socket.send(payload);
      };
      return {
        echo: (payload) => {
          const back = echoes.wait();
          send(RawOp.echo, payload);
          return back;
        },
        subscribe: async (topic) => {
          send(RawOp.subscribe, Uint8Array.of(0, ...new TextEncoder().encode(topic)));
          // Subscriptions are fire-and-forget here; an echo proves the server has processed it.
          const back = echoes.wait();
          send(RawOp.echo, new Uint8Array(1));
          await back;
        },
        publish: (topic, payload) => {
          const name = new TextEncoder().encode(topic);
          socket.send(Uint8Array.of(RawOp.publish, name.length, ...name, ...payload));
        },
        onPublished: (listener) => void (published = listener),
        close: () => socket.close(),
      };
    },
  };
}

function socketIo(transport: 'websocket' | 'polling', tls: boolean): Target {
  return {
    name: `socket.io-${transport}${tls ? '+tls' : ''}`,
    server: 'socketio',
    tls,
    async connect({ port, certPem }) {
      const socket: Socket = io(`${tls ? 'https' : 'http'}://127.0.0.1:${port}`, { transports: [transport], reconnection: false, forceNew: true, ...(tls && certPem ? { ca: certPem } : {}) });
      const echoes = echoQueue();
      let published: (payload: Uint8Array, topic: string) => void = () => undefined;
      socket.on('echo', () => echoes.arrived());
      socket.on('message', (topic: string, data: Uint8Array) => published(data, topic));
      await new Promise((resolve, reject) => socket.once('connect', () => resolve(undefined)).once('connect_error', reject));
      return {
        echo: (payload) => {
          const back = echoes.wait();
          socket.emit('echo', payload);
          return back;
        },
        subscribe: async (topic) => {
          socket.emit('subscribe', topic);
          const back = echoes.wait();
          socket.emit('echo', new Uint8Array(1));
          await back;
        },
        publish: (topic, payload) => void socket.emit('publish', topic, payload),
        onPublished: (listener) => void (published = listener),
        acked: (payload) => new Promise<void>((resolve) => socket.emit('acked', payload, () => resolve())),
        close: () => socket.close(),
      };
    },
  };
}

/** Every system under test, in report order. */
export const TARGETS: readonly Target[] = [
  switchyard('websocket', false),
  switchyard('websocket', true),
  switchyard('long-polling', false),
  switchyard('long-polling', true),
  switchyard('polling', false),
  switchyard('polling', true),
  switchyard('webtransport', true),
  switchyard('webtransport', true, 'channel:bench'),
  switchyard('webtransport', true, 'unreliable'),
  rawWs(false),
  rawWs(true),
  socketIo('websocket', false),
  socketIo('websocket', true),
  socketIo('polling', false),
  socketIo('polling', true),
];
