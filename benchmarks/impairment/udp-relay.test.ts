/**
 * The userspace UDP relay over real sockets on 127.0.0.1: replies come back through it, it drops
 * the configured share in each direction and counts exactly what it dropped, and it delays.
 */
import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../test-support/servers.ts';
import { startUdpRelay, type UdpRelay } from './udp-relay.ts';

const sockets: dgram.Socket[] = [];
const relays: UdpRelay[] = [];
afterEach(async () => {
  await Promise.all(relays.splice(0).map((relay) => relay.close()));
  for (const socket of sockets.splice(0)) socket.close();
});

/** A UDP echo server; returns its port and how many datagrams it received. */
/** Large receive buffers: under a loaded CI box only the relay may drop, never a full socket queue. */
const udp = () => dgram.createSocket({ type: 'udp4', recvBufferSize: 4 * 1024 * 1024 });

async function echoServer(): Promise<{ port: number; received: () => number }> {
  const socket = udp();
  sockets.push(socket);
  let received = 0;
  socket.on('message', (datagram, from) => {
    received++;
    socket.send(datagram, from.port, from.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return { port: (socket.address() as AddressInfo).port, received: () => received };
}

async function clientSocket(onMessage: (datagram: Buffer) => void): Promise<dgram.Socket> {
  const socket = udp();
  sockets.push(socket);
  socket.on('message', onMessage);
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return socket;
}

/** Sends `count` numbered datagrams, paced so no socket buffer drops any (only the relay may). */
async function sendPaced(socket: dgram.Socket, port: number, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const datagram = Buffer.alloc(100);
    datagram.writeUInt32BE(i);
    socket.send(datagram, port, '127.0.0.1');
    if (i % 50 === 49) await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

describe('UDP impairment relay', () => {
  it('forwards everything both ways at 0 % loss', async () => {
    const server = await echoServer();
    const relay = await startUdpRelay({ targetHost: '127.0.0.1', targetPort: server.port, lossPercent: 0 });
    relays.push(relay);
    let echoed = 0;
    const client = await clientSocket(() => echoed++);
    await sendPaced(client, relay.port, 1000);
    await waitFor(() => echoed === 1000, 5_000, 'every echo');
    expect(server.received()).toBe(1000);
    expect(relay.counters()).toEqual({ clientToServer: { forwarded: 1000, dropped: 0 }, serverToClient: { forwarded: 1000, dropped: 0 } });
  });

  it('drops about the configured share in each direction and counts exactly what it dropped', async () => {
    const server = await echoServer();
    const relay = await startUdpRelay({ targetHost: '127.0.0.1', targetPort: server.port, lossPercent: 10 });
    relays.push(relay);
    let echoed = 0;
    const client = await clientSocket(() => echoed++);
    await sendPaced(client, relay.port, 3000);
    // Every datagram decided on, each way: what the relay forwarded has reached the server, and the echoes the client.
    await waitFor(() => {
      const { clientToServer: up, serverToClient: down } = relay.counters();
      return up.forwarded + up.dropped === 3000 && server.received() === up.forwarded && down.forwarded + down.dropped === up.forwarded && echoed === down.forwarded;
    }, 10_000, 'every datagram forwarded or dropped, both ways');
    const counts = relay.counters();
    expect(counts.clientToServer.forwarded + counts.clientToServer.dropped).toBe(3000);
    expect(server.received()).toBe(counts.clientToServer.forwarded);
    expect(echoed).toBe(counts.serverToClient.forwarded);
    expect(counts.serverToClient.forwarded + counts.serverToClient.dropped).toBe(counts.clientToServer.forwarded);
    // 10 % of 3000: binomial sd ≈ 16, so 230–370 is a > 4 sd band.
    expect(counts.clientToServer.dropped).toBeGreaterThan(230);
    expect(counts.clientToServer.dropped).toBeLessThan(370);
    expect(counts.serverToClient.dropped / counts.clientToServer.forwarded).toBeGreaterThan(0.07);
    expect(counts.serverToClient.dropped / counts.clientToServer.forwarded).toBeLessThan(0.13);
  });

  it('delays each direction by delayMs, and changes loss live', async () => {
    const server = await echoServer();
    const relay = await startUdpRelay({ targetHost: '127.0.0.1', targetPort: server.port, lossPercent: 0, delayMs: 40 });
    relays.push(relay);
    const rtts: number[] = [];
    let sentAt = 0;
    const client = await clientSocket(() => rtts.push(performance.now() - sentAt));
    for (let i = 0; i < 5; i++) {
      sentAt = performance.now();
      client.send(Buffer.alloc(10), relay.port, '127.0.0.1');
      await waitFor(() => rtts.length === i + 1, 2_000, 'echo');
    }
    // 40 ms each way; timers never fire early.
    expect(Math.min(...rtts)).toBeGreaterThanOrEqual(79);
    expect(Math.max(...rtts)).toBeLessThan(300);
    relay.setLoss(100);
    client.send(Buffer.alloc(10), relay.port, '127.0.0.1');
    // Dropped on the way in: no echo can follow it.
    await waitFor(() => relay.counters().clientToServer.dropped === 1, 2_000, 'the relay to drop the datagram');
    expect(relay.counters().clientToServer.forwarded).toBe(5);
    expect(rtts).toHaveLength(5);
    expect(() => relay.setLoss(101)).toThrow(RangeError);
  });
});
