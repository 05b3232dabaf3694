/**
 * The child process that holds the server's wrtc peer connections (see wrtc-remote.ts for why).
 * It runs the commands the parent sends over IPC on real wrtc objects and reports their events
 * back; it keeps no state beyond the objects, so a crash loses only them.
 */
import type { WrtcCommand, WrtcEvent } from './wrtc-remote.ts';
import { loadWrtc } from './wrtc.ts';

const peers = new Map<number, RTCPeerConnection>();
/**
 * An idle peer connection held while this process runs: wrtc releases its native factory when its
 * last peer connection closes and leaks 8 descriptors each time it makes a new one (measured), so
 * without it every idle → busy cycle of the server leaked. (It also keeps this process alive,
 * which only the parent's disconnect ends.)
 */
let factoryKeeper: RTCPeerConnection | undefined;
/** Channels by `${peer}:${channel}`; the parent numbers its own channels up from 1, the remote peer's count down from -1. */
const channels = new Map<string, { channel: RTCDataChannel; sent: number }>();

function emit(event: WrtcEvent): void {
  // The parent may be gone already (it exited, e.g. its port was taken): this process follows on 'disconnect'.
  if (process.connected) process.send!(event);
}

function peerState(id: number, peer: RTCPeerConnection): WrtcEvent {
  return {
    ev: 'state',
    id,
    connectionState: peer.connectionState,
    iceConnectionState: peer.iceConnectionState,
    iceGatheringState: peer.iceGatheringState,
    maxMessageSize: peer.sctp?.maxMessageSize ?? null,
  };
}

function watchChannel(peerId: number, ch: number, channel: RTCDataChannel): void {
  const key = `${peerId}:${ch}`;
  const entry = { channel, sent: 0 };
  channels.set(key, entry);
  channel.binaryType = 'arraybuffer';
  let opened = false;
  const open = (): void => {
    if (opened) return;
    opened = true;
    const peer = peers.get(peerId);
    if (peer) emit(peerState(peerId, peer)); // the SCTP message size, before the open
    emit({ ev: 'open', id: peerId, ch });
  };
  channel.onopen = open;
  // In a process of its own, wrtc never fires `open` for a channel this side created once the
  // connection is up (its readyState turns 'open'; seen with two wrtc processes): watch for it.
  if (ch > 0) {
    const deadline = Date.now() + 10_000;
    const watch = (): void => {
      if (opened || !channels.has(key) || Date.now() > deadline) return;
      if (channel.readyState === 'open') open();
      else setTimeout(watch, 5);
    };
    setTimeout(watch, 5);
  }
  channel.onclose = () => {
    channels.delete(key);
    emit({ ev: 'close', id: peerId, ch });
  };
  channel.onmessage = (event: MessageEvent<string | ArrayBuffer>) => emit({ ev: 'message', id: peerId, ch, data: typeof event.data === 'string' ? event.data : new Uint8Array(event.data) });
  channel.onbufferedamountlow = () => emit({ ev: 'buffered', id: peerId, ch, amount: channel.bufferedAmount, sent: entry.sent });
}

let nextRemoteChannel = -1;

function run(command: WrtcCommand): unknown {
  const peer = peers.get(command.id);
  switch (command.op) {
    case 'peer':
      return loadWrtc().then((PeerConnection) => {
      factoryKeeper ??= new PeerConnection({ iceServers: [] });
      const created = new PeerConnection(command.configuration);
      peers.set(command.id, created);
      const report = (): void => emit(peerState(command.id, created));
      created.addEventListener('connectionstatechange', report);
      created.addEventListener('iceconnectionstatechange', report);
      created.addEventListener('icegatheringstatechange', report);
      created.addEventListener('icecandidate', () => emit({ ev: 'candidate', id: command.id }));
      created.addEventListener('datachannel', (event) => {
        const ch = nextRemoteChannel--;
        watchChannel(command.id, ch, event.channel);
        emit({ ev: 'datachannel', id: command.id, ch, label: event.channel.label, open: event.channel.readyState === 'open' });
      });
      });
    case 'setRemote':
      return peer!.setRemoteDescription(command.description);
    case 'createAnswer':
      return peer!.createAnswer().then((answer) => ({ type: answer.type, sdp: answer.sdp }));
    case 'setLocal':
      return peer!.setLocalDescription(command.description);
    case 'localDescription':
      return peer!.localDescription?.sdp ?? null;
    case 'channel':
      watchChannel(command.id, command.ch, peer!.createDataChannel(command.label, command.init));
      return undefined;
    case 'threshold': {
      const entry = channels.get(`${command.id}:${command.ch}`);
      if (entry) entry.channel.bufferedAmountLowThreshold = command.bytes;
      return undefined;
    }
    case 'send': {
      const entry = channels.get(`${command.id}:${command.ch}`);
      if (!entry) return undefined;
      entry.sent = command.seq;
      try {
        if (typeof command.data === 'string') entry.channel.send(command.data);
        else entry.channel.send(command.data as Uint8Array<ArrayBuffer>);
      } catch {
        // A channel closing under the send: its close event follows.
      }
      emit({ ev: 'buffered', id: command.id, ch: command.ch, amount: entry.channel.bufferedAmount, sent: command.seq });
      return undefined;
    }
    case 'closeChannel':
      channels.get(`${command.id}:${command.ch}`)?.channel.close();
      return undefined;
    case 'stats':
      return peer!.getStats().then((report) => {
        const entries: [string, unknown][] = [];
        report.forEach((value: unknown, key: string) => entries.push([key, { ...(value as object) }]));
        return entries;
      });
    case 'close':
      peers.delete(command.id);
      for (const key of channels.keys()) if (key.startsWith(`${command.id}:`)) channels.delete(key);
      peer?.close();
      return undefined;
  }
}

/**
 * A peer's commands run in order: one that returns a promise (loading wrtc, negotiating) holds the
 * peer's later ones until it settles; the rest (sends above all) run at once.
 */
const held = new Map<number, WrtcCommand[]>();

function handle(command: WrtcCommand): void {
  const queue = held.get(command.id);
  if (queue) {
    queue.push(command);
    return;
  }
  let result: unknown;
  try {
    result = run(command);
  } catch (error) {
    return reply(command, undefined, error);
  }
  if (!(result instanceof Promise)) return reply(command, result);
  held.set(command.id, []);
  result.then(
    (value: unknown) => reply(command, value),
    (error: unknown) => reply(command, undefined, error),
  ).finally(() => {
    const later = held.get(command.id) ?? [];
    held.delete(command.id);
    for (const next of later) handle(next);
  });
}

function reply(command: WrtcCommand, value: unknown, error?: unknown): void {
  if (command.req === undefined) return;
  if (error === undefined) emit({ ev: 'reply', id: command.id, req: command.req, value });
  else emit({ ev: 'reply', id: command.id, req: command.req, error: error instanceof Error ? error.message : String(error) });
}

process.on('message', handle);
process.on('disconnect', () => process.exit(0));
// A reply to a parent that just died (EPIPE): nothing to do but follow it.
process.on('error', () => process.exit(0));
emit({ ev: 'ready', id: 0 });
