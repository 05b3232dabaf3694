/**
 * The TUN forwarder path with real TCP and UDP flows between two namespaces: the configured delay
 * shows up as round-trip time, the configured loss within statistical bounds and exactly in the
 * forwarder's counters, bursty loss in bursts, the rate limit as throughput, the same seed as the
 * same drops, and a host-side client end reaching the server namespace. Runs as root (CI is);
 * elsewhere it is skipped with the reason canForward() gives.
 */
import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { lineFrom } from '../../test-support/child-output.ts';
import { canForward, createTunPath, forwarderSpec, type LinkImpairment, type TunPath } from './tun-path.ts';

const capability = await canForward();
const paths: TunPath[] = [];
const children: ChildProcess[] = [];
afterEach(async () => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
  await Promise.all(paths.splice(0).map((path) => path.destroy()));
});

function spawnIn(p: TunPath, side: 'server' | 'client', script: string, args: string[], stdin: 'pipe' | 'ignore' = 'ignore'): ChildProcess {
  const child = p.spawn(side, process.execPath, ['-e', script, ...args], { stdio: [stdin, 'pipe', 'inherit'] });
  children.push(child);
  return child;
}

async function path(clientToServer: LinkImpairment, serverToClient: LinkImpairment = clientToServer, extra: { seed?: number; client?: 'host' } = {}): Promise<TunPath> {
  const created = await createTunPath({ clientToServer, serverToClient, ...extra });
  paths.push(created);
  return created;
}

/** In the server namespace: a TCP server (echo, or sink that hashes) and a UDP echo/counter. */
const SERVERS = `
const [host] = process.argv.slice(1);
let udpCount = 0;
require('node:net').createServer((s) => {
  const hash = require('node:crypto').createHash('sha256'); let tcpBytes = 0;
  s.on('data', (d) => { hash.update(d); tcpBytes += d.length; });
  s.on('end', () => { if (tcpBytes) console.log('tcp ' + tcpBytes + ' ' + hash.digest('hex')); s.end(); });
  s.on('error', () => {});
})
  .listen(9001, host, () => {
    const udp = require('node:dgram').createSocket({ type: 'udp4', recvBufferSize: 4 << 20 });
    udp.on('message', (m, from) => { udpCount++; if (m[0] === 1) udp.send(m, from.port, from.address); });
    udp.bind(9002, host, () => console.log('ready'));
  });
process.stdin.on('data', () => console.log('udp ' + udpCount));`;

/**
 * In the client namespace: the minimum TCP connect time and UDP echo RTT over `n` tries, one at a time.
 * The minimum (a min-RTT filter, as TCP's own) leaves out scheduling delay from other work on the
 * machine, which only ever adds.
 */
const RTT_CLIENT = `
const [host, n] = [process.argv[1], Number(process.argv[2])];
(async () => {
  const tcp = [], udp = [];
  for (let i = 0; i < n; i++) tcp.push(await new Promise((resolve, reject) => { const t = performance.now(); const s = require('node:net').connect(9001, host, () => { resolve(performance.now() - t); s.destroy(); }); s.on('error', reject); }));
  const socket = require('node:dgram').createSocket('udp4');
  for (let i = 0; i < n; i++) udp.push(await new Promise((resolve) => { const t = performance.now(); socket.once('message', () => resolve(performance.now() - t)); socket.send(Buffer.from([1, i]), 9002, host); }));
  socket.close();
  console.log(JSON.stringify({ tcp: Math.min(...tcp), udp: Math.min(...udp) }));
})();`;

/** In the client namespace: `count` UDP datagrams (not echoed), paced so no socket buffer overflows. */
const UDP_SENDER = `
const [host, count] = [process.argv[1], Number(process.argv[2])];
const socket = require('node:dgram').createSocket('udp4'); let sent = 0;
const burst = () => { for (let i = 0; i < 20 && sent < count; i++, sent++) socket.send(Buffer.alloc(200), 9002, host); if (sent < count) setTimeout(burst, 1); else setTimeout(() => { socket.close(); console.log('sent'); }, 50); };
burst();`;

/** In the client namespace: sends stdin over TCP, prints the time from connect to the server's close. */
const TCP_SENDER = `
const t = performance.now();
const s = require('node:net').connect(9001, process.argv[1], () => process.stdin.pipe(s));
s.on('data', () => {}); s.on('close', () => console.log('done ' + (performance.now() - t)));`;

async function startServers(p: TunPath): Promise<ChildProcess> {
  const servers = spawnIn(p, 'server', SERVERS, [p.serverAddress], 'pipe');
  await lineFrom(servers, /^ready/);
  return servers;
}

async function udpReceived(servers: ChildProcess): Promise<number> {
  const line = lineFrom(servers, /^udp /);
  servers.stdin!.write('count\n');
  return Number((await line).split(' ')[1]);
}

async function sendUdp(p: TunPath, count: number): Promise<void> {
  await lineFrom(spawnIn(p, 'client', UDP_SENDER, [p.serverAddress, String(count)]), /^sent/);
}

async function sendTcp(p: TunPath, servers: ChildProcess, payload: Buffer): Promise<{ received: string; ms: number }> {
  const received = lineFrom(servers, /^tcp /);
  const sender = spawnIn(p, 'client', TCP_SENDER, [p.serverAddress], 'pipe');
  const done = lineFrom(sender, /^done/);
  sender.stdin!.end(payload);
  return { received: await received, ms: Number((await done).split(' ')[1]) };
}

/** Whether `observed` of `n` trials is within 4.5 standard deviations of a rate `p`. */
function withinBinomialBounds(observed: number, n: number, p: number): boolean {
  const sd = Math.sqrt(n * p * (1 - p));
  return Math.abs(observed - n * p) <= 4.5 * sd;
}

it('writes a spec per direction and refuses impossible figures', () => {
  expect(forwarderSpec({ delayMs: 20, lossPercent: 2 })).toBe('delay=20,jitter=0,loss=2,burst=1,rate=0,queue=1000');
  expect(forwarderSpec({ delayMs: 5, jitterMs: 2, lossPercent: 1, burst: 3, rateMbit: 20, queuePackets: 50 })).toBe('delay=5,jitter=2,loss=1,burst=3,rate=20,queue=50');
  expect(() => forwarderSpec({ delayMs: -1, lossPercent: 0 })).toThrow(RangeError);
  expect(() => forwarderSpec({ delayMs: 0, lossPercent: 101 })).toThrow(RangeError);
  expect(() => forwarderSpec({ delayMs: 0, lossPercent: 1, burst: 0.5 })).toThrow(RangeError);
});

describe.skipIf(!capability.ok)(`TUN forwarder path (${capability.ok ? 'root' : (capability as { reason: string }).reason})`, () => {
  it('adds the configured delay to TCP and UDP alike: RTT grows by 2 × 20 ms within 10 %', async () => {
    const p = await path({ delayMs: 0, lossPercent: 0 });
    await startServers(p);
    const rtt = async () => JSON.parse(await lineFrom(spawnIn(p, 'client', RTT_CLIENT, [p.serverAddress, '15']), /^\{/)) as { tcp: number; udp: number };
    // The base round trip (processes, event loops, the forwarder) measured on the same path without delay,
    // so only the forwarder's added delay is compared with the configuration.
    const base = await rtt();
    await p.configure({ clientToServer: { delayMs: 20, lossPercent: 0 }, serverToClient: { delayMs: 20, lossPercent: 0 } });
    const delayed = await rtt();
    // A TCP connect is one round trip (SYN, SYN-ACK); a UDP echo is one too.
    for (const added of [delayed.tcp - base.tcp, delayed.udp - base.udp]) {
      expect(added).toBeGreaterThan(40 * 0.9);
      expect(added).toBeLessThan(40 * 1.1);
    }
    const stats = await p.stats();
    expect(stats.clientToServer.dropped).toBe(0);
    expect(stats.clientToServer.config.delayMs).toBe(20);
    // Half the packets crossed at 0 ms, half at 20 ms.
    expect(stats.clientToServer.meanDelayMs).toBeGreaterThan(5);
    expect(stats.serverToClient.meanDelayMs).toBeLessThan(20.5);
  }, 30_000);

  it('drops the configured share of UDP and TCP packets, counted exactly, and TCP repairs every loss', async () => {
    const p = await path({ delayMs: 5, lossPercent: 5 }, { delayMs: 5, lossPercent: 5 }, { seed: 7 });
    const servers = await startServers(p);
    await sendUdp(p, 2000);
    const received = await udpReceived(servers);
    const afterUdp = await p.stats();
    // Only this flow crossed the path (point-to-point devices, no IPv6): the counters are its datagrams.
    expect(afterUdp.clientToServer.received).toBe(2000);
    expect(afterUdp.clientToServer.dropped).toBe(2000 - received);
    expect(withinBinomialBounds(2000 - received, 2000, 0.05)).toBe(true);

    const payload = randomBytes(2 * 1024 * 1024);
    const tcp = await sendTcp(p, servers, payload);
    expect(tcp.received).toBe(`tcp ${payload.length} ${createHash('sha256').update(payload).digest('hex')}`);
    const afterTcp = await p.stats();
    const tcpPackets = afterTcp.clientToServer.received - afterUdp.clientToServer.received;
    const tcpDropped = afterTcp.clientToServer.dropped - afterUdp.clientToServer.dropped;
    expect(tcpPackets).toBeGreaterThan(1400); // 2 MiB in ≤ 1448-byte segments, plus retransmissions
    expect(withinBinomialBounds(tcpDropped, tcpPackets, 0.05)).toBe(true);
    expect(withinBinomialBounds(afterTcp.serverToClient.dropped, afterTcp.serverToClient.received, 0.05)).toBe(true);
    for (const direction of [afterTcp.clientToServer, afterTcp.serverToClient]) {
      expect(direction.forwarded + direction.dropped + direction.queueDrops + direction.queued).toBe(direction.received);
    }
  }, 60_000);

  it('drops the same packets for the same seed, and in bursts with a Gilbert–Elliott burst length', async () => {
    const drops: number[] = [];
    for (const _ of [1, 2]) {
      const p = await path({ delayMs: 0, lossPercent: 5 }, { delayMs: 0, lossPercent: 5 }, { seed: 42 });
      await startServers(p);
      await sendUdp(p, 1000);
      drops.push((await p.stats()).clientToServer.dropped);
      await p.destroy();
    }
    expect(drops[0]).toBe(drops[1]);

    const bursty = await path({ delayMs: 0, lossPercent: 5, burst: 4 }, { delayMs: 0, lossPercent: 0 }, { seed: 3 });
    await startServers(bursty);
    await sendUdp(bursty, 4000);
    const { clientToServer } = await bursty.stats();
    expect(clientToServer.dropped / clientToServer.received).toBeGreaterThan(0.02);
    expect(clientToServer.dropped / clientToServer.received).toBeLessThan(0.09);
    const meanBurst = clientToServer.dropped / clientToServer.lossBursts;
    expect(meanBurst).toBeGreaterThan(2.5);
    expect(meanBurst).toBeLessThan(6);
  }, 60_000);

  it('limits the rate: a 2 MiB TCP transfer at 20 Mbit/s takes its serialisation time', async () => {
    const p = await path({ delayMs: 1, lossPercent: 0, rateMbit: 20 });
    const servers = await startServers(p);
    const payload = randomBytes(2 * 1024 * 1024);
    const tcp = await sendTcp(p, servers, payload);
    expect(tcp.received.startsWith(`tcp ${payload.length} `)).toBe(true);
    const stats = await p.stats();
    // Wire bits (IP packets, headers included) over the transfer time: never above the configured
    // rate; below it only by what slow start and the sending processes on a shared machine cost.
    const mbit = (stats.clientToServer.bytes * 8) / (tcp.ms * 1000);
    expect(mbit).toBeLessThanOrEqual(20 * 1.02);
    expect(mbit).toBeGreaterThan(20 * 0.5);
    expect(stats.clientToServer.queueDrops).toBe(0);
  }, 60_000);

  it('puts the client end in the host namespace on request: this process reaches the server namespace through the path', async () => {
    const p = await path({ delayMs: 10, lossPercent: 0 }, { delayMs: 10, lossPercent: 0 }, { client: 'host' });
    expect(p.clientNamespace).toBeNull();
    await startServers(p);
    const net = await import('node:net');
    const started = performance.now();
    await new Promise<void>((resolve, reject) => {
      const socket = net.connect(9001, p.serverAddress, () => {
        socket.destroy();
        resolve();
      });
      socket.on('error', reject);
    });
    expect(performance.now() - started).toBeGreaterThan(18);
    expect((await p.stats()).clientToServer.received).toBeGreaterThan(0);
    const final = await p.destroy();
    expect(final?.clientToServer.forwarded).toBeGreaterThan(0);
    expect(execFileSync('ip', ['link', 'show']).toString()).not.toContain(`${p.serverNamespace.slice(0, -1)}c`);
    expect(execFileSync('ip', ['netns', 'list']).toString()).not.toContain(p.serverNamespace);
  }, 30_000);
});
