/**
 * The `webrtc` transport beyond the conformance suite: the chunk codec (pure), and the signalling
 * endpoint and peer connections against what a stranger can do — bad offers, unknown sessions,
 * hundreds of offers that never complete ICE, oversized messages, a peer that vanishes mid-transfer —
 * counting peer connections, data channels and file descriptors afterwards. Real wrtc peers on loopback.
 */
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { Agent, fetch as undiciFetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DualHttpServer } from '../../server/http-server.ts';
import { collect, waitFor } from '../../test-support/servers.ts';
import type { CloseInfo, Connection } from '../transport.ts';
import { batchFrame, ChunkAssembler, chunkMessage, closeFrame } from './chunks.ts';
import { GATHER_TIMEOUT_MS, HOST_CANDIDATES_QUIET_MS } from './client.ts';
import { iceGathered, webrtcResources, WebRtcConnection } from './connection.ts';
import { connectWebRtcNode } from './node.ts';
import { WebRtcTransportServer } from './server.ts';
import { loadWrtc } from './wrtc.ts';
import { wrtcProcesses } from './wrtc-remote.ts';

describe('webrtc chunk codec', () => {
  const reassemble = (wires: (string | Uint8Array)[], max = 1 << 20) => {
    const assembler = new ChunkAssembler(max);
    return wires.flatMap((wire) => {
      const result = assembler.push(wire);
      return result?.kind === 'messages' ? result.messages : [];
    });
  };

  it('sends fitting text as itself, and chunks what does not fit, text and binary alike', () => {
    expect(chunkMessage('hé', 3, 16)).toEqual(['hé']);
    const text = 'ü'.repeat(50); // 100 bytes
    const textChunks = chunkMessage(text, 100, 16);
    expect(textChunks.every((chunk) => chunk instanceof Uint8Array && chunk.length <= 16)).toBe(true);
    expect(reassemble(textChunks)).toEqual([text]);
    const bytes = Uint8Array.from({ length: 100 }, (_, i) => i);
    const binaryChunks = chunkMessage(bytes, 100, 16);
    expect(binaryChunks).toHaveLength(Math.ceil(100 / 15));
    expect(reassemble(binaryChunks)).toEqual([bytes]);
    expect(reassemble(chunkMessage(new Uint8Array(0), 0, 16))).toEqual([new Uint8Array(0)]);
    expect(reassemble(chunkMessage('', 0, 16))).toEqual(['']);
  });

  it('carries batches and close frames', () => {
    expect(reassemble([batchFrame(['a', Uint8Array.of(1), ''])])).toEqual(['a', Uint8Array.of(1), '']);
    expect(new ChunkAssembler(100).push(closeFrame(4001, 'bye'))).toEqual({ kind: 'close', code: 4001, reason: 'bye' });
  });

  it('refuses malformed or oversized input with typed errors', () => {
    expect(() => new ChunkAssembler(10).push(chunkMessage(new Uint8Array(11), 11, 4)[0]!)).not.toThrow();
    const tooBig = new ChunkAssembler(10);
    expect(() => chunkMessage(new Uint8Array(11), 11, 4).forEach((wire) => tooBig.push(wire))).toThrow(expect.objectContaining({ code: 'ERR_MESSAGE_TOO_LARGE', closeCode: 1009 }));
    expect(() => new ChunkAssembler(10).push(new Uint8Array(0))).toThrow(expect.objectContaining({ code: 'ERR_CHUNK_EMPTY' }));
    expect(() => new ChunkAssembler(10).push(Uint8Array.of(9))).toThrow(expect.objectContaining({ code: 'ERR_CHUNK_KIND' }));
    expect(() => new ChunkAssembler(10).push(Uint8Array.of(3, 0xff))).toThrow(expect.objectContaining({ code: 'ERR_INVALID_UTF8' }));
    expect(() => new ChunkAssembler(10).push(Uint8Array.of(5, 9, 1))).toThrow(expect.objectContaining({ code: 'ERR_CHUNK_BATCH' }));
    const interleaved = new ChunkAssembler(100);
    interleaved.push(Uint8Array.of(1, 1, 2));
    expect(() => interleaved.push('text')).toThrow(expect.objectContaining({ code: 'ERR_CHUNK_INTERLEAVED' }));
  });
});

/** Descriptors of this process and of the server's wrtc process (where the native side's sockets are). */
const openFds = () => readdirSync('/proc/self/fd').length + (wrtcProcesses.pid ? readdirSync(`/proc/${wrtcProcesses.pid}/fd`).length : 0);

/** A real offer from a wrtc peer that is then closed: answering it can never complete ICE. */
async function deadOffer(): Promise<string> {
  const PeerConnection = await loadWrtc();
  const peer = new PeerConnection({ iceServers: [] });
  peer.createDataChannel('reliable');
  await peer.setLocalDescription(await peer.createOffer());
  // With its candidates, as the client sends it.
  await iceGathered(peer, GATHER_TIMEOUT_MS, HOST_CANDIDATES_QUIET_MS);
  const sdp = peer.localDescription!.sdp;
  peer.close();
  return sdp;
}

describe('webrtc server against strangers', () => {
  let http: DualHttpServer;
  let rtc: WebRtcTransportServer;
  let url: string;
  const serverSide: Connection[] = [];
  const serverCloses: CloseInfo[] = [];

  // The clients' wrtc (in this process) leaks 8 descriptors whenever its last peer connection
  // closes and a new one starts (the server's process holds an idle one against it): hold one here too.
  let clientFactoryKeeper: RTCPeerConnection | undefined;
  beforeAll(async () => {
    clientFactoryKeeper = new (await loadWrtc())();
    rtc = new WebRtcTransportServer({ maxPending: 64, iceTimeoutMs: 3_000, maxOfferBytes: 16 * 1024, maxMessageSize: 64 * 1024 });
    rtc.onConnection((connection) => {
      serverSide.push(connection);
      connection.on('close', (info) => serverCloses.push(info));
      connection.on('message', (message, lane) => connection.state === 'open' && connection.send(message, lane));
    });
    http = new DualHttpServer({ host: '127.0.0.1', port: 0, transports: [rtc], fallback: (_request, response) => response.writeHead(404).end() });
    url = `http://127.0.0.1:${await http.listen()}`;
    await loadWrtc();
  });
  afterAll(async () => {
    await rtc.close();
    await http.close();
    clientFactoryKeeper?.close();
  });

  // Its own HTTP agent, closed before descriptors are counted (keep-alive sockets are not leaks).
  let agent = new Agent();
  const post = (body: string | Uint8Array<ArrayBuffer>, pathname = '/rtc', method = 'POST') =>
    undiciFetch(`${url}${pathname}`, { method, body: method === 'POST' ? body : undefined, headers: { 'content-type': 'application/sdp' }, dispatcher: agent }) as unknown as Promise<Response>;
  const errorCode = async (response: Response) => ((await response.json()) as { error: { code: string } }).error.code;

  it('answers malformed offers with 400 and a typed error, an oversized one with 413, and keeps serving', async () => {
    const offer = await deadOffer();
    const bad: [string | Uint8Array<ArrayBuffer>, number, string][] = [
      ['hello', 400, 'ERR_BAD_OFFER'],
      ['v=0\r\n', 400, 'ERR_BAD_OFFER'],
      [Uint8Array.of(0xff, 0xfe, 0x00), 400, 'ERR_BAD_OFFER'],
      [offer.replace(/a=fingerprint:[^\r\n]*/, 'a=fingerprint:sha-256 XX'), 400, 'ERR_BAD_OFFER'],
      [offer.replace(/a=ice-ufrag:[^\r\n]*\r\n/, ''), 400, 'ERR_BAD_OFFER'],
      [offer.replace(/m=application \d+/, 'm=application 99999999999'), 400, 'ERR_BAD_OFFER'],
      [offer + 'a=candidate:garbage\r\n'.repeat(20), 400, 'ERR_BAD_OFFER'],
      ['v=0\r\n' + 'a=x\r\n'.repeat(5000), 413, 'ERR_BODY_TOO_LARGE'],
    ];
    for (const [body, status, code] of bad) {
      const response = await post(body);
      expect({ status: response.status, code: await errorCode(response) }).toEqual({ status, code });
    }
    const wrongMethod = await post('', '/rtc', 'GET');
    expect([wrongMethod.status, await errorCode(wrongMethod)]).toEqual([405, 'ERR_METHOD']);
    // Nothing of the refused offers stays behind; a real client still connects.
    await waitFor(() => rtc.pendingCount === 0, 5_000, 'no pending sessions');
    const client = connectWebRtcNode({ url });
    await client.opened;
    client.close();
    await client.closed;
  });

  it('answers requests for an unknown session with 404 ERR_UNKNOWN_SESSION', async () => {
    for (const method of ['POST', 'DELETE']) {
      const response = await post(await deadOffer(), '/rtc/no-such-session', method);
      expect([response.status, await errorCode(response)]).toEqual([404, 'ERR_UNKNOWN_SESSION']);
    }
  });

  it('bounds offers that never complete ICE: busy past maxPending, each one closed after the ICE timeout, nothing left', async () => {
    const offer = await deadOffer();
    // Warm up (wrtc's threads, the server's factory keeper) before counting.
    await (await post(offer)).text();
    await waitFor(() => rtc.pendingCount === 0, 15_000, 'the warm-up session to time out');
    const baseline = { ...webrtcResources };
    const fdsBefore = openFds();
    const timeoutsBefore = rtc.signallingStats().iceTimeouts;
    const statuses: number[] = [];
    // 300 offers, 30 at a time; the server holds at most 64 of them.
    for (let i = 0; i < 300; i += 30) {
      const responses = await Promise.all(Array.from({ length: 30 }, () => post(offer)));
      for (const response of responses) {
        statuses.push(response.status);
        if (response.status === 503) expect(await errorCode(response)).toBe('ERR_BUSY');
        else await response.text();
      }
    }
    const answered = statuses.filter((s) => s === 201).length;
    expect(answered).toBeGreaterThan(0);
    // Never more than 64 waiting at once: every answer beyond 64 needed an earlier session to time out.
    expect(answered).toBeLessThanOrEqual(64 + rtc.signallingStats().iceTimeouts - timeoutsBefore);
    expect(statuses.filter((s) => s === 503).length).toBeGreaterThan(0);
    expect(statuses.filter((s) => s !== 201 && s !== 503)).toEqual([]);
    expect(rtc.pendingCount).toBeLessThanOrEqual(64);
    await waitFor(() => rtc.pendingCount === 0, 15_000, 'every unconnected session to time out');
    await agent.close();
    agent = new Agent();
    expect(webrtcResources).toEqual(baseline);
    expect(rtc.signallingStats().iceTimeouts).toBeGreaterThanOrEqual(statuses.filter((s) => s === 201).length);
    // The native side released its sockets too (a little slack for the runtime's own descriptors).
    await waitFor(() => openFds() <= fdsBefore + 10, 5_000, `file descriptors back near ${fdsBefore} (now ${openFds()})`);
  });

  it('a client that gives up before connecting ends its session on the server (DELETE)', async () => {
    const before = rtc.signallingStats().deleted;
    // Relay-only without a TURN server: the offer goes, ICE can never connect.
    const hopeless = connectWebRtcNode({ url, iceTransportPolicy: 'relay', connectTimeoutMs: 300 });
    await expect(hopeless.opened).rejects.toThrow(/did not connect within 300 ms/);
    await waitFor(() => rtc.signallingStats().deleted === before + 1, 5_000, 'the DELETE');
    await waitFor(() => rtc.pendingCount === 0, 5_000, 'no pending session');
  });

  it('releases every peer connection and data channel after churn', async () => {
    // Warm up (wrtc's threads, the server's factory keeper) before counting.
    const baseline = { ...webrtcResources };
    const warmUp = connectWebRtcNode({ url });
    await warmUp.opened;
    warmUp.close();
    await warmUp.closed;
    // The answering side lets the closing side tear down first (WRTC_CLOSE_RACE in connection.ts).
    await waitFor(() => webrtcResources.peerConnections === baseline.peerConnections && webrtcResources.dataChannels === baseline.dataChannels, 5_000, 'the warm-up released');
    await agent.close();
    agent = new Agent();
    const fdsBefore = openFds();
    const fetchWithAgent = ((input: string | URL, init?: RequestInit) => undiciFetch(input, { ...(init as object), dispatcher: agent })) as unknown as typeof fetch;
    for (let round = 0; round < 5; round++) {
      const clients = Array.from({ length: 10 }, () => connectWebRtcNode({ url, fetch: fetchWithAgent }));
      await Promise.all(clients.map((c) => c.opened));
      // Use every lane, so channels get opened on demand too.
      clients.forEach((c, i) => {
        c.send(`r${i}`);
        c.send(`c${i}`, `channel:${i % 3}`);
        c.send(Uint8Array.of(i), 'unreliable');
      });
      await Promise.all(clients.map((c) => waitFor(() => c.stats().messagesIn >= 2, 10_000, 'echoes')));
      // Closed from the client in even rounds, from the server in odd ones.
      if (round % 2 === 0) clients.forEach((c, i) => c.close(4000 + i, 'churn'));
      else for (const s of serverSide.slice(-10)) s.close(4100, 'churn');
      const infos = await Promise.all(clients.map((c) => c.closed));
      expect(infos.every((info) => info.wasClean && info.code === (round % 2 === 0 ? info.code : 4100))).toBe(true);
    }
    await waitFor(() => webrtcResources.peerConnections === baseline.peerConnections && webrtcResources.dataChannels === baseline.dataChannels, 5_000, 'resources back to baseline');
    expect(rtc.connectionCount).toBe(0);
    await agent.close();
    agent = new Agent();
    await waitFor(() => openFds() <= fdsBefore + 10, 5_000, `file descriptors back near ${fdsBefore} (now ${openFds()})`);
  });

  it('the side that answers a close frame touches no data channel until the peer connection is torn down (wrtc crashes when the peer closes a channel in use)', async () => {
    // A client whose data channels record every use: send, bufferedAmount, readyState.
    const Wrtc = await loadWrtc();
    let answered = false;
    let tornDown = false;
    const usesAfterAnswer: string[] = [];
    const watched = (channel: RTCDataChannel): RTCDataChannel =>
      new Proxy(channel, {
        get(target, key) {
          if ((key === 'send' || key === 'bufferedAmount' || key === 'readyState') && answered && !tornDown) usesAfterAnswer.push(`${target.label}.${key}`);
          const value = Reflect.get(target, key, target) as unknown;
          return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
        },
        set: (target, key, value) => Reflect.set(target, key, value, target),
      });
    class WatchedPeerConnection extends Wrtc {
      override createDataChannel(label: string, init?: RTCDataChannelInit): RTCDataChannel {
        return watched(super.createDataChannel(label, init));
      }
      override close(): void {
        tornDown = true;
        super.close();
      }
    }
    const client = connectWebRtcNode({ url, RTCPeerConnection: WatchedPeerConnection });
    const echoes = collect(client);
    await client.opened;
    for (let i = 0; i < 20; i++) client.send(new Uint8Array(32 * 1024));
    await waitFor(() => echoes.length === 20, 10_000, 'echoes');
    client.on('close', () => (answered = true)); // emitted right after the answering close frame is sent
    serverSide.at(-1)!.close(4100, 'server asks');
    expect(await client.closed).toMatchObject({ code: 4100, wasClean: true });
    await waitFor(() => tornDown, 5_000, 'the client torn down after the server');
    expect(usesAfterAnswer).toEqual([]);
  });

  it('closes a connection that sends a message over the server limit with 1009, and refuses an oversized unreliable one at once', async () => {
    const client = connectWebRtcNode({ url });
    await client.opened;
    expect(() => client.send(new Uint8Array(client.capabilities.maxUnreliableSize + 1), 'unreliable')).toThrow(expect.objectContaining({ code: 'ERR_MESSAGE_TOO_LARGE' }));
    client.send(new Uint8Array(64 * 1024 + 1));
    const info = await client.closed;
    expect(info.code).toBe(1009);
  });

  it('ends the server side with 1006 when the client peer vanishes mid-transfer (no close frame)', async () => {
    const client = connectWebRtcNode({ url }) as WebRtcConnection;
    await client.opened;
    await waitFor(() => serverSide.at(-1)?.state === 'open');
    const server = serverSide.at(-1)!;
    const got = collect(server);
    for (let i = 0; i < 200; i++) client.send(new Uint8Array(8 * 1024));
    await waitFor(() => got.length > 0, 5_000, 'the transfer to start');
    client.peerConnection!.close(); // the peer goes away without a word
    const info = await server.closed;
    expect(info).toMatchObject({ code: 1006, wasClean: false });
  });

  it('ends the server side with 1006 when the client process is killed mid-transfer', async () => {
    const before = serverCloses.length;
    const script = path.join(import.meta.dirname, '../../test-support/webrtc-vanishing-peer.ts');
    const child = spawn(process.execPath, ['--import', 'tsx', script, url], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (data: Buffer) => data.toString().includes('sending') && resolve());
      child.on('exit', (code) => reject(new Error(`fixture exited early (${code})`)));
    });
    await waitFor(() => serverSide.at(-1)?.stats().messagesIn !== 0, 10_000, 'data from the child');
    child.kill('SIGKILL');
    const killedAt = Date.now();
    await waitFor(() => serverCloses.length > before, 30_000, 'the server side to notice');
    expect(serverCloses.at(-1)).toMatchObject({ code: 1006, wasClean: false });
    console.log(`killed peer noticed ${Date.now() - killedAt} ms after the kill`);
  }, 45_000);
});

describe('webrtc loading', () => {
  it('never loads wrtc in a process that does not use webrtc (server with it enabled, WebSocket client), and loads it on first use', async () => {
    const script = path.join(import.meta.dirname, '../../test-support/webrtc-lazy-load.ts');
    const output = await new Promise<string>((resolve, reject) => {
      const child = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['ignore', 'pipe', 'inherit'] });
      let text = '';
      child.stdout.on('data', (data: Buffer) => (text += data.toString()));
      child.on('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`fixture exited with ${code}`))));
    });
    expect(JSON.parse(output)).toEqual({ afterWebSocket: false, afterWebRtc: true });
  }, 30_000);
});
