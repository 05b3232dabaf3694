/**
 * Peer-to-peer webrtc between Node clients (wrtc): signalling through the router as unicast
 * messages, then every lane straight between the two, with the router's counters flat; refusals
 * and a failed direct path reject with typed errors. Real server, real peers on loopback.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type SwitchyardServer } from '../../server/index.ts';
import { waitFor } from '../../test-support/servers.ts';
import type { SwitchyardClient } from '../client.ts';
import { createClient } from '../node-webrtc.ts';
import type { Connection, Lane, Message } from '../transport.ts';
import { webrtcResources } from './connection.ts';

let server: SwitchyardServer;
const clients: SwitchyardClient[] = [];
const signalsRouted: string[] = [];

beforeAll(async () => {
  server = await startServer({
    port: 0,
    certificate: 'none',
    router: {
      // The signalling goes through the router's hooks like any unicast (here: observed; a hook could refuse it).
      beforeRoute: (command) => {
        if (command.t === 'send' && typeof command.data === 'object' && command.data !== null && '$webrtc' in command.data) signalsRouted.push(String(command.data.$webrtc));
        return undefined;
      },
    },
  });
});
afterAll(async () => {
  for (const client of clients) client.close();
  await server.close();
});

async function connected(options: Partial<Parameters<typeof createClient>[0]> = {}): Promise<SwitchyardClient> {
  const client = createClient({ url: server.urls.http, transports: 'websocket', ...options });
  clients.push(client);
  await client.connect();
  return client;
}

function inbox(connection: Connection): [Message, Lane][] {
  const got: [Message, Lane][] = [];
  connection.on('message', (message, lane) => got.push([message, lane]));
  return got;
}

describe('peer-to-peer webrtc (Node, wrtc)', () => {
  it('connects two clients directly; every lane flows with the server out of the path', async () => {
    const alice = await connected();
    const bob = await connected({ transports: 'webrtc' });
    const incoming = new Promise<[Connection, string]>((resolve) => bob.on('peer', (connection, from) => resolve([connection, from])));
    const toBob = await alice.peer(bob.id!);
    const [toAlice, from] = await incoming;
    expect(from).toBe(alice.id);
    expect(toBob.transport).toBe('webrtc');
    expect(signalsRouted.slice(-2)).toEqual(['offer', 'answer']);

    const atBob = inbox(toAlice);
    const atAlice = inbox(toBob);
    const before = server.router.stats();
    toBob.send('hello bob');
    toBob.send(Uint8Array.of(1, 2, 3), 'channel:moves');
    toBob.send(new Uint8Array(600_000).fill(9), 'channel:bulk'); // chunked over SCTP's limit
    toAlice.send('hello alice', 'channel:moves');
    await waitFor(() => atBob.length === 3 && atAlice.length === 1, 10_000, 'the direct exchange');
    // Unreliable may be lost (a burst like the one above can overflow a loopback socket buffer): send until one arrives.
    for (let i = 0; i < 50 && !atBob.some(([, lane]) => lane === 'unreliable'); i++) {
      toBob.send(`datagram ${i}`, 'unreliable');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(atBob.some(([m, lane]) => lane === 'unreliable' && String(m).startsWith('datagram'))).toBe(true);
    expect(atBob.filter(([, lane]) => lane !== 'unreliable').map(([m, lane]) => [typeof m === 'string' ? m : m.length, lane])).toEqual([
      ['hello bob', 'reliable'],
      [3, 'channel:moves'],
      [600_000, 'channel:bulk'],
    ]);
    expect(atAlice).toEqual([['hello alice', 'channel:moves']]);
    // Nothing of that crossed the server.
    const after = server.router.stats();
    expect({ routed: after.routed, deliveries: after.deliveries }).toEqual({ routed: before.routed, deliveries: before.deliveries });

    toBob.close(4000, 'done');
    expect(await toAlice.closed).toEqual({ code: 4000, reason: 'done', wasClean: true });
  });

  it('lets a client refuse offers: peer() rejects with ERR_PEER_REJECTED', async () => {
    const alice = await connected();
    const picky = await connected({ peers: { accept: () => false } });
    await expect(alice.peer(picky.id!)).rejects.toMatchObject({ code: 'ERR_PEER_REJECTED' });
  });

  it('rejects with ERR_PEER_ICE_FAILED naming the ICE state when there is no direct path, and leaves nothing behind', async () => {
    const baseline = { ...webrtcResources };
    // Relay-only with no TURN server: no candidate on either side, so ICE can never connect.
    const noPath = { iceTransportPolicy: 'relay' as const, connectTimeoutMs: 2_000 };
    const alice = await connected({ peers: noPath });
    const bob = await connected({ peers: noPath });
    const error = await alice.peer(bob.id!).then(
      () => undefined,
      (e: unknown) => e as { code: string; message: string; iceState: string },
    );
    expect(error?.code).toBe('ERR_PEER_ICE_FAILED');
    expect(error?.message).toMatch(/ICE (new|checking|failed|disconnected)/);
    expect(error?.iceState).toMatch(/new|checking|failed|disconnected/);
    await waitFor(() => webrtcResources.peerConnections === baseline.peerConnections, 5_000, 'both sides to release their peer connections');
  });
});
