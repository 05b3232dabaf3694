/**
 * The server's `RTCPeerConnection`: wrtc's, run in a child process (wrtc-process.ts) behind an
 * object with the part of the RTCPeerConnection / RTCDataChannel API that WebRtcConnection uses.
 *
 * Why a process: wrtc handles a data channel's close on libwebrtc's signalling thread and clears
 * the channel's native pointer there while send() reads it on the JS thread, unlocked. A peer that
 * closes a channel (or its whole peer connection: a browser tab closed mid-transfer) while the
 * server sends on it can crash the process — reproduced here in RTCDataChannel::Send within a few
 * hundred aborted transfers. In the child, such a crash ends only the WebRTC sessions it held
 * (their connections see ICE failed and close with 1006); the server, its other transports and
 * every other client keep working, and the next offer starts a new child. The child starts at the
 * first offer (it loads wrtc: about a second), so a server nobody reaches over WebRTC never runs it.
 *
 * bufferedAmount is the child's last reading plus what was sent after it, so backpressure also
 * covers what still travels over IPC.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { PeerConnectionClass } from './client.ts';

export type WrtcCommand = { id: number; req?: number } & (
  | { op: 'peer'; configuration: RTCConfiguration }
  | { op: 'setRemote'; description: RTCSessionDescriptionInit }
  | { op: 'createAnswer' }
  | { op: 'setLocal'; description: RTCSessionDescriptionInit }
  | { op: 'localDescription' }
  | { op: 'channel'; ch: number; label: string; init: RTCDataChannelInit | undefined }
  | { op: 'threshold'; ch: number; bytes: number }
  | { op: 'send'; ch: number; seq: number; data: string | Uint8Array }
  | { op: 'closeChannel'; ch: number }
  | { op: 'stats' }
  | { op: 'close' }
);

export type WrtcEvent = { id: number } & (
  | { ev: 'ready' }
  | { ev: 'state'; connectionState: RTCPeerConnectionState; iceConnectionState: RTCIceConnectionState; iceGatheringState: RTCIceGatheringState; maxMessageSize: number | null }
  | { ev: 'candidate' }
  | { ev: 'datachannel'; ch: number; label: string; open: boolean }
  | { ev: 'open'; ch: number }
  | { ev: 'close'; ch: number }
  | { ev: 'message'; ch: number; data: string | Uint8Array }
  | { ev: 'buffered'; ch: number; amount: number; sent: number }
  | { ev: 'reply'; req: number; value?: unknown; error?: string }
);

/** The server's wrtc child processes: how many started, and how many ended under open peer connections (crashed). */
export const wrtcProcesses = { started: 0, lost: 0, lastLoss: '', pid: undefined as number | undefined };

/** One child process and the peer connections it holds; started on first use, again after a crash. */
class WrtcHost {
  #child: ChildProcess | undefined;
  #ready = false;
  #waiting: WrtcCommand[] = [];
  readonly #peers = new Map<number, RemotePeerConnection>();
  readonly #replies = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  #nextPeer = 1;
  #nextRequest = 1;

  register(peer: RemotePeerConnection): number {
    const id = this.#nextPeer++;
    this.#peers.set(id, peer);
    this.#hold();
    return id;
  }

  send(command: WrtcCommand): void {
    const child = this.#start();
    if (!this.#ready) this.#waiting.push(command);
    else if (child.connected) child.send(command);
    // else: the child is ending; its exit fails every peer connection it held.
  }

  request(command: WrtcCommand): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const req = this.#nextRequest++;
      this.#replies.set(req, { resolve, reject });
      this.send({ ...command, req });
    });
  }

  forget(id: number): void {
    this.#peers.delete(id);
    this.#hold();
  }

  /** The child holds this process open while it holds peer connections, and only then. */
  #hold(): void {
    const child = this.#child;
    if (!child) return;
    if (this.#peers.size > 0) {
      child.ref();
      child.channel?.ref();
    } else {
      child.unref();
      child.channel?.unref();
    }
  }

  #start(): ChildProcess {
    if (this.#child) return this.#child;
    const source = import.meta.url.endsWith('.ts');
    const entry = fileURLToPath(new URL(`./wrtc-process.${source ? 'ts' : 'js'}`, import.meta.url));
    // From source (tests, npm start) the child needs tsx's loader, as this process has it.
    const execArgv = source ? ['--import', pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href] : [];
    const child = fork(entry, [], { serialization: 'advanced', execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.#child = child;
    wrtcProcesses.started++;
    wrtcProcesses.pid = child.pid;
    child.on('message', (event: WrtcEvent) => this.#event(event));
    child.once('exit', (code, signal) => this.#lost(child, signal ?? `exit code ${code}`));
    // A write to a child that just died (EPIPE): its exit follows and ends its peer connections.
    child.on('error', () => undefined);
    this.#hold();
    return child;
  }

  #event(event: WrtcEvent): void {
    if (event.ev === 'ready') {
      this.#ready = true;
      for (const command of this.#waiting.splice(0)) this.#child!.send(command);
      return;
    }
    if (event.ev === 'reply') {
      const reply = this.#replies.get(event.req);
      this.#replies.delete(event.req);
      if (event.error !== undefined) reply?.reject(new Error(event.error));
      else reply?.resolve(event.value);
      return;
    }
    this.#peers.get(event.id)?.receive(event);
  }

  #lost(child: ChildProcess, why: string): void {
    if (this.#child !== child) return;
    this.#child = undefined;
    this.#ready = false;
    this.#waiting = [];
    const error = new Error(`the WebRTC process ended (${why})`);
    wrtcProcesses.lost++;
    wrtcProcesses.lastLoss = why;
    for (const reply of this.#replies.values()) reply.reject(error);
    this.#replies.clear();
    const peers = [...this.#peers.values()];
    this.#peers.clear();
    for (const peer of peers) peer.lost();
  }
}

class RemoteDataChannel {
  readyState: RTCDataChannelState = 'connecting';
  binaryType: BinaryType = 'arraybuffer';
  onopen: ((event: Event) => void) | null = null;
  onclose: ((event: Event) => void) | null = null;
  onmessage: ((event: MessageEvent) => void) | null = null;
  onbufferedamountlow: ((event: Event) => void) | null = null;
  #threshold = 0;
  #reading = 0;
  #seq = 0;
  /** Sends the child has not yet reported on: [seq, bytes]. */
  readonly #inFlight: [number, number][] = [];
  #inFlightBytes = 0;

  constructor(
    readonly label: string,
    readonly id: number,
    private readonly peer: RemotePeerConnection,
  ) {}

  get bufferedAmount(): number {
    return this.#reading + this.#inFlightBytes;
  }

  get bufferedAmountLowThreshold(): number {
    return this.#threshold;
  }

  set bufferedAmountLowThreshold(bytes: number) {
    this.#threshold = bytes;
    this.peer.command({ id: this.peer.id, op: 'threshold', ch: this.id, bytes });
  }

  send(data: string | ArrayBufferView | ArrayBuffer): void {
    if (this.readyState !== 'open') throw new DOMException("RTCDataChannel.readyState is not 'open'", 'InvalidStateError');
    let wire: string | Uint8Array;
    if (typeof data === 'string') wire = data;
    else {
      const view = data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      // IPC clones a view's whole buffer: send a view of part of one as its own bytes.
      wire = view.byteOffset === 0 && view.byteLength === view.buffer.byteLength ? view : view.slice();
    }
    const bytes = typeof wire === 'string' ? Buffer.byteLength(wire) : wire.byteLength;
    const seq = ++this.#seq;
    this.#inFlight.push([seq, bytes]);
    this.#inFlightBytes += bytes;
    this.peer.command({ id: this.peer.id, op: 'send', ch: this.id, seq, data: wire });
  }

  close(): void {
    if (this.readyState === 'closed') return;
    this.readyState = 'closing';
    this.peer.command({ id: this.peer.id, op: 'closeChannel', ch: this.id });
  }

  receive(event: WrtcEvent): void {
    switch (event.ev) {
      case 'open':
        this.readyState = 'open';
        this.onopen?.(new Event('open'));
        break;
      case 'close':
        this.ended();
        break;
      case 'message': {
        const bytes = event.data;
        const data = typeof bytes === 'string' ? bytes : bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? (bytes.buffer as ArrayBuffer) : bytes.slice().buffer;
        this.onmessage?.(new MessageEvent('message', { data }));
        break;
      }
      case 'buffered': {
        while (this.#inFlight.length > 0 && this.#inFlight[0]![0] <= event.sent) this.#inFlightBytes -= this.#inFlight.shift()![1];
        this.#reading = event.amount;
        if (this.bufferedAmount <= this.#threshold) this.onbufferedamountlow?.(new Event('bufferedamountlow'));
        break;
      }
    }
  }

  /** Closed: by the peer, the child, or the child's end. */
  ended(): void {
    if (this.readyState === 'closed') return;
    this.readyState = 'closed';
    this.#inFlight.length = 0;
    this.#inFlightBytes = 0;
    this.onclose?.(new Event('close'));
  }
}

export class RemotePeerConnection extends EventTarget {
  connectionState: RTCPeerConnectionState = 'new';
  iceConnectionState: RTCIceConnectionState = 'new';
  iceGatheringState: RTCIceGatheringState = 'new';
  sctp: { maxMessageSize: number } | null = null;
  readonly id: number;
  readonly #channels = new Map<number, RemoteDataChannel>();
  #nextChannel = 1;
  /** close() was called (connectionState may read 'closed' before that, from the child). */
  #closed = false;

  constructor(
    private readonly host: WrtcHost,
    configuration?: RTCConfiguration,
  ) {
    super();
    this.id = host.register(this);
    host.send({ id: this.id, op: 'peer', configuration: configuration ?? {} });
  }

  /** The local description as it is now, candidates gathered so far included (asked of the child: an SDP per candidate event would flood IPC). */
  async fetchLocalDescription(): Promise<RTCSessionDescriptionInit | null> {
    const sdp = (await this.host.request({ id: this.id, op: 'localDescription' })) as string | null;
    return sdp === null ? null : { type: 'answer', sdp };
  }

  command(command: WrtcCommand): void {
    if (!this.#closed) this.host.send(command);
  }

  async setRemoteDescription(description: RTCSessionDescriptionInit): Promise<void> {
    await this.host.request({ id: this.id, op: 'setRemote', description });
  }

  async createAnswer(): Promise<RTCSessionDescriptionInit> {
    return (await this.host.request({ id: this.id, op: 'createAnswer' })) as RTCSessionDescriptionInit;
  }

  async setLocalDescription(description: RTCSessionDescriptionInit): Promise<void> {
    await this.host.request({ id: this.id, op: 'setLocal', description });
  }

  createDataChannel(label: string, init?: RTCDataChannelInit): RTCDataChannel {
    const channel = new RemoteDataChannel(label, this.#nextChannel++, this);
    this.#channels.set(channel.id, channel);
    this.command({ id: this.id, op: 'channel', ch: channel.id, label, init });
    return channel as unknown as RTCDataChannel;
  }

  async getStats(): Promise<RTCStatsReport> {
    const entries = (await this.host.request({ id: this.id, op: 'stats' })) as [string, unknown][];
    return new Map(entries) as unknown as RTCStatsReport;
  }

  close(): void {
    if (this.#closed) return;
    this.command({ id: this.id, op: 'close' });
    this.#closed = true;
    this.connectionState = 'closed';
    this.iceConnectionState = 'closed';
    this.host.forget(this.id);
    for (const channel of this.#channels.values()) channel.readyState = 'closed';
  }

  receive(event: WrtcEvent): void {
    if (event.ev === 'state') {
      const changed = { connection: event.connectionState !== this.connectionState, ice: event.iceConnectionState !== this.iceConnectionState, gathering: event.iceGatheringState !== this.iceGatheringState };
      this.connectionState = event.connectionState;
      this.iceConnectionState = event.iceConnectionState;
      this.iceGatheringState = event.iceGatheringState;
      if (event.maxMessageSize !== null) this.sctp = { maxMessageSize: event.maxMessageSize };
      if (changed.gathering) this.dispatchEvent(new Event('icegatheringstatechange'));
      if (changed.ice) this.dispatchEvent(new Event('iceconnectionstatechange'));
      if (changed.connection) this.dispatchEvent(new Event('connectionstatechange'));
    } else if (event.ev === 'candidate') {
      this.dispatchEvent(new Event('icecandidate'));
    } else if (event.ev === 'datachannel') {
      const channel = new RemoteDataChannel(event.label, event.ch, this);
      if (event.open) channel.readyState = 'open';
      this.#channels.set(event.ch, channel);
      this.dispatchEvent(Object.assign(new Event('datachannel'), { channel }));
    } else if ('ch' in event) {
      this.#channels.get(event.ch)?.receive(event);
    }
  }

  /** The child process ended under this peer connection: as ICE failing, which WebRtcConnection ends with 1006. */
  lost(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.connectionState = 'failed';
    this.iceConnectionState = 'failed';
    this.dispatchEvent(new Event('iceconnectionstatechange'));
    this.dispatchEvent(new Event('connectionstatechange'));
    for (const channel of this.#channels.values()) channel.ended();
  }
}

let host: WrtcHost | undefined;

/** The RTCPeerConnection class whose objects live in the shared wrtc child process. */
export const IsolatedRTCPeerConnection = function (this: unknown, configuration?: RTCConfiguration) {
  host ??= new WrtcHost();
  return new RemotePeerConnection(host, configuration);
} as unknown as PeerConnectionClass;
