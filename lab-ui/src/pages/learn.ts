/**
 * Learn: polling, long-polling, WebSocket, WebTransport and WebRTC on real connections.
 * - Capabilities as each live connection reports them.
 * - Handshakes: the WebSocket upgrade this browser sent and the server's 101 (through the lab's
 *   wire tap); long-polling and polling exchanges (a Node client in the server process through the
 *   tap: a browser fetch to the tap's port would be cross-origin); the WebTransport CONNECT as the
 *   server's HTTP/3 layer decoded it, with what the browser timed and quiche counted.
 * - WebRTC's signalling as this page's own connection made it: the SDP offer it POSTed and the
 *   answer the server returned (recorded by the fetch the transport was given), the ICE candidates
 *   both carry, and the candidate pair and data channels getStats() reports once connected.
 * - A frame inspector of this browser's WebSocket frames, both directions, from the tap.
 * - Bytes on the wire per message, from the server's own connection counters.
 */
import type { ConnectRecord, TapRecord } from '../../server/lab-api.ts';
import { createClient, type SwitchyardClient, type TransportCapabilities } from '../../../transports/browser-client.ts';
import { connectWebTransport } from '../../../transports/webtransport/client.ts';
import { connectWebRtc } from '../../../transports/webrtc/client.ts';
import type { WebRtcConnection } from '../../../transports/webrtc/connection.ts';
import { barChart, series, setData } from '../charts.ts';
import { connectClient, labJson, labState, serverView, unavailable, variant, VARIANTS, type ServerInfo } from '../lab.ts';
import { formatMs, nowMs, stampPayload, wireBytesPerHop } from '../stats.ts';
import { append, card, formatNumber, h, note, numberInput, sleep, table, takeawaysCard } from '../ui.ts';

const TRANSPORT_CARDS = [
  { transport: 'polling', title: 'Polling', text: 'The client asks “anything for me?” every 100 ms with a GET. Simple, works everywhere, pays a request per interval and up to one interval of delay.' },
  { transport: 'long-polling', title: 'Long-polling', text: 'The GET is held open until there is something to send (or 25 s pass). Messages arrive as soon as they exist; every batch costs an HTTP response and a new request.' },
  { transport: 'websocket', title: 'WebSocket', text: 'One HTTP/1.1 request upgrades the TCP connection; from then on both sides send framed messages at any time. One ordered byte stream: a lost packet holds everything behind it.' },
  { transport: 'webtransport', title: 'WebTransport', text: 'An HTTP/3 extended CONNECT over QUIC (UDP, TLS 1.3 built in) opens a session with many independent streams and unreliable datagrams.' },
  { transport: 'webrtc', title: 'WebRTC', text: 'One HTTP POST trades an SDP offer for an answer; ICE then finds a UDP path, DTLS secures it, and SCTP carries data channels: ordered and reliable, or unordered with no retransmissions. The same API reaches another browser directly.' },
] as const;

const CAPABILITY_LABELS: [keyof TransportCapabilities, string][] = [
  ['serverPush', 'server push'],
  ['binary', 'binary'],
  ['independentChannels', 'independent channels'],
  ['unreliable', 'datagrams'],
];

type HttpRecord = Extract<TapRecord, { kind: 'http' }>;
type FrameRecord = Extract<TapRecord, { kind: 'frame' }>;

function httpMessage(record: HttpRecord, note?: string): HTMLElement {
  const up = record.direction === 'client→server';
  const pre = h('pre', {}, h('b', {}, record.startLine), '\n', record.headers.map(([name, value]) => `${name}: ${value}`).join('\n'));
  return h(
    'div',
    { class: 'http-msg' },
    h('header', {}, h('span', { class: `dir ${up ? 'dir-up' : 'dir-down'}` }, up ? '→ request' : '← response'), h('span', {}, `${note ? `${note} · ` : ''}${formatNumber(record.wireBytes)} B on the wire · body ${formatNumber(record.bodyLength)} B · +${record.t.toFixed(1)} ms`)),
    pre,
  );
}

function frameRow(record: FrameRecord): (Node | string)[] {
  const up = record.direction === 'client→server';
  return [
    `${record.t.toFixed(1)} ms`,
    h('span', { class: `dir ${up ? 'dir-up' : 'dir-down'}` }, up ? 'browser → server' : 'server → browser'),
    h('span', { class: `op op-${record.opcode}` }, `0x${record.opcode.toString(16).toUpperCase()} ${record.opcodeName}`),
    record.fin ? '1' : '0',
    record.masked ? 'masked' : '—',
    formatNumber(record.payloadLength),
    formatNumber(record.wireBytes),
    h('span', { class: 'mono' }, record.preview),
    record.origin === 'tap' ? h('span', { class: 'tag', title: 'made by the lab tap (RFC 6455 §5.4 fragmentation or its own ping)' }, 'tap') : '',
  ];
}

/** The `a=candidate` lines of an SDP as [protocol, address, port, type] (RFC 8839 §5.1). */
export function sdpCandidates(sdp: string): [string, string, string, string][] {
  return sdp
    .split(/\r?\n/)
    .filter((line) => line.startsWith('a=candidate:'))
    .map((line) => {
      const [, , protocol = '', , address = '', port = '', , type = ''] = line.slice('a=candidate:'.length).split(' ');
      return [protocol.toLowerCase(), address, port, type];
    });
}

/** What the wire-bytes measurement shows: the cheapest and dearest framing at this payload size, and what that means. */
export function wireBytesTakeaways(rows: readonly { label: string; perHop: number | null; error?: string }[], payload: number): HTMLElement {
  const measured = rows.filter((r): r is { label: string; perHop: number; error?: string } => r.perHop !== null && r.perHop > 0);
  const lines: string[] = [];
  if (measured.length < 2) lines.push('Fewer than two transports were measured: nothing to compare (inconclusive).');
  else {
    const sorted = [...measured].sort((a, b) => a.perHop - b.perHop);
    const [least, most] = [sorted[0]!, sorted.at(-1)!];
    const overhead = (r: { perHop: number }) => `${formatNumber(Math.max(0, r.perHop - payload), 1)} B over the payload`;
    lines.push(`At ${formatNumber(payload)} B per message, ${least.label} cost least (${formatNumber(least.perHop, 1)} B per hop, ${overhead(least)}) and ${most.label} most (${formatNumber(most.perHop, 1)} B, ${overhead(most)}).`);
    if (most.perHop < payload * 1.1) lines.push('Every transport stayed within 10 % of the payload: at this size framing hardly matters (inconclusive between them); the choice rests on latency and lanes.');
    else lines.push(`For many small messages (chat, telemetry), framing and per-request headers dominate: ${most.label} spends ${formatNumber(most.perHop / least.perHop, 1)}× the bytes of ${least.label}. Try a larger payload to see the gap close.`);
  }
  const lost = rows.filter((r) => r.error);
  if (lost.length) lines.push(`Not counted cleanly: ${lost.map((r) => `${r.label} (${r.error})`).join('; ')}.`);
  return takeawaysCard('learn-takeaways', 'What this measurement shows', lines);
}

export function renderLearn(root: HTMLElement, server: ServerInfo): () => void {
  const state = { signalling: undefined as undefined | { offerCandidates: number; answerCandidates: number; status: number | undefined; selectedPair: string | null; channels: string[] }, handshakes: {} as Record<string, 'done' | string>, frames: [] as FrameRecord[], wire: [] as { transport: string; perMessage: number | null; error?: string }[], wireState: 'idle' as 'idle' | 'running' | 'done' };
  labState.learn = state;
  const disposers: (() => void)[] = [];
  const missingWt = unavailable(VARIANTS.find((v) => v.transport === 'webtransport')!, server);

  // ——— transports and their capabilities ———
  const cards = TRANSPORT_CARDS.map((t) => {
    const caps = h('div', { class: 'caps' }, h('span', { class: 'muted' }, 'connecting…'));
    const element = h('section', { class: 'card' }, h('h4', {}, t.title), h('p', {}, t.text), caps);
    return { t, caps, element };
  });
  void Promise.all(
    cards.map(async ({ t, caps }) => {
      try {
        const client = await connectClient(t.transport);
        const capabilities = client.connection!.capabilities;
        client.close();
        caps.replaceChildren(...CAPABILITY_LABELS.map(([key, label]) => h('span', { class: `cap${capabilities[key] ? '' : ' no'}` }, label)), h('span', { class: 'cap' }, `≤ ${formatNumber(capabilities.maxMessageSize / 1024 / 1024, 0)} MiB`));
      } catch (error) {
        caps.replaceChildren(h('span', { class: 'bad' }, `not available here: ${(error as Error).message}`));
      }
    }),
  );

  // ——— handshakes ———
  const tabs = ['websocket', 'long-polling', 'polling', 'webtransport', 'webrtc'] as const;
  const tabButtons = tabs.map((t) => h('button', { 'data-tab': t }, TRANSPORT_CARDS.find((c) => c.transport === t)!.title));
  const handshakeBody = h('div', { id: 'handshake' });
  const handshakeViews: Record<string, HTMLElement> = {};

  // The WebSocket session through the tap serves both the handshake view and the frame inspector.
  let tap: { id: string; port: number } | undefined;
  let wsClient: SwitchyardClient | undefined;
  let records: TapRecord[] = [];
  const frameBody = h('div', { class: 'table-wrap', id: 'frames' });
  const frameStatus = h('span', { class: 'muted' }, '');

  async function refreshTap(): Promise<void> {
    if (!tap) return;
    try {
      records = (await labJson<{ records: TapRecord[] }>(`/lab/taps/${tap.id}`)).records;
    } catch {
      return; // the tap expired: the buttons open a new one
    }
    state.frames = records.filter((r): r is FrameRecord => r.kind === 'frame');
    frameBody.replaceChildren(state.frames.length ? table(['time', 'direction', 'opcode', 'FIN', 'mask', 'payload B', 'wire B', 'payload', ''], state.frames.map(frameRow), { 'data-testid': 'frame-table', class: 'data frames' }) : h('p', { class: 'empty' }, 'No frames yet.'));
    const http = records.filter((r): r is HttpRecord => r.kind === 'http');
    if (http.length) {
      handshakeViews.websocket = h(
        'div',
        {},
        note('info', 'Captured by the lab’s TCP tap between this browser and the server: the exact bytes Chromium sent and the server answered. The key and accept headers prove the server read this request (RFC 6455 §4.2.2).'),
        h('div', { class: 'exchange' }, ...http.slice(0, 2).map((r) => httpMessage(r))),
      );
      state.handshakes.websocket = 'done';
      if (activeTab === 'websocket') showTab('websocket');
    }
  }

  async function openWebSocketSession(): Promise<void> {
    wsClient?.close();
    frameStatus.textContent = 'opening a WebSocket through the tap…';
    tap = await labJson<{ id: string; port: number }>('/lab/taps', { fragmentAbove: 1024 });
    wsClient = createClient({ url: `${location.protocol}//${location.hostname}:${tap.port}`, transports: 'websocket', reconnect: false });
    await wsClient.connect();
    frameStatus.textContent = `connected as ${wsClient.id} through tap port ${tap.port}`;
    await refreshTap();
  }

  const poll = setInterval(() => void refreshTap(), 500);
  disposers.push(() => clearInterval(poll));

  async function captureHttp(transport: 'long-polling' | 'polling'): Promise<HTMLElement> {
    const { records: captured, roundTripMs } = await labJson<{ records: TapRecord[]; roundTripMs: number }>('/lab/http-capture', { transport, size: 64 });
    const http = captured.filter((r): r is HttpRecord => r.kind === 'http');
    state.handshakes[transport] = 'done';
    return h(
      'div',
      {},
      note('info', `A real ${transport} session from a Node client inside the server process, through the same TCP tap (a fetch from this page to the tap’s port would be cross-origin). It opens a session, sends one 64 B message to itself (round trip ${formatMs(roundTripMs)}), and closes. ${http.length} HTTP messages, ${formatNumber(http.reduce((n, r) => n + r.wireBytes, 0))} bytes.`),
      h('div', {}, ...http.map((r) => httpMessage(r, `connection ${r.connection}`))),
    );
  }

  async function captureWebTransport(): Promise<HTMLElement> {
    if (missingWt) return note('warn', `WebTransport cannot be shown here: ${missingWt}.`);
    const tag = Math.random().toString(36).slice(2, 10);
    const infoStart = performance.now();
    const info = await (await fetch('/info', { cache: 'no-store' })).json() as ServerInfo;
    const infoMs = performance.now() - infoStart;
    const url = `${info.urls.webtransport}?lab=${tag}`;
    const started = nowMs();
    const client = createClient({ transports: 'webtransport', reconnect: false, connectors: { webtransport: (options) => connectWebTransport({ ...options, webTransportUrl: url, certificateSha256: info.certificateSha256 ?? undefined }) } });
    await client.connect();
    const openMs = nowMs() - started;
    const { connects } = await labJson<{ connects: ConnectRecord[] }>(`/lab/webtransport/connects?tag=${tag}`);
    const connect = connects[0];
    const view = await serverView(client.id!);
    client.close();
    state.handshakes.webtransport = 'done';
    const headers = connect ? h('pre', {}, connect.headers.map(([name, value]) => `${name}: ${value}`).join('\n')) : h('p', { class: 'bad' }, 'the server recorded no CONNECT for this session');
    const stats = view?.stats;
    return h(
      'div',
      {},
      h(
        'ol',
        { class: 'steps' },
        h('li', {}, h('strong', {}, 'GET /info over HTTP/1.1'), h('span', { class: 'muted' }, `session URL and the SHA-256 of the server’s 14-day certificate, for serverCertificateHashes · ${formatMs(infoMs)} (browser)`)),
        h('li', { class: 'unseen' }, h('strong', {}, 'QUIC handshake with TLS 1.3 (UDP)'), h('span', { class: 'muted' }, 'Initial and Handshake packets, encrypted; the engine does not expose them per connection, so they are not shown. Their cost is inside the time to ready below.')),
        h('li', { class: 'unseen' }, h('strong', {}, 'HTTP/3 SETTINGS on both control streams'), h('span', { class: 'muted' }, 'ENABLE_CONNECT_PROTOCOL, H3_DATAGRAM, WebTransport limits: exchanged inside QUIC; not captured per connection.')),
        h('li', {}, h('strong', {}, 'Extended CONNECT (HEADERS frame, QPACK), as the server decoded it'), connect ? h('div', { class: 'http-msg' }, h('header', {}, h('span', { class: 'dir dir-up' }, '→ request'), h('span', {}, `authority ${connect.authority}`)), headers) : headers),
        h('li', {}, h('strong', {}, `Response :status ${connect?.status ?? '?'}`), h('span', { class: 'muted' }, 'the status the server’s route decision answered; the session is open')),
        h('li', {}, h('strong', {}, `Session ready after ${formatMs(openMs)}`), h('span', { class: 'muted' }, 'browser: from new WebTransport() to the first stream carrying hello/welcome')),
      ),
      stats ? h('dl', { class: 'kv' }, h('dt', {}, 'QUIC bytes sent / received (server, quiche)'), h('dd', {}, `${formatNumber(stats.wireBytesOut)} / ${formatNumber(stats.wireBytesIn)}`), h('dt', {}, 'RTT (quiche, whole ms)'), h('dd', {}, String(stats.rttMs ?? '—')), h('dt', {}, 'packets lost / retransmitted'), h('dd', {}, `${stats.packetsLost ?? '—'} / ${stats.packetsRetransmitted ?? '—'}`)) : null,
    );
  }

  async function captureWebRtc(): Promise<HTMLElement> {
    const missing = unavailable(variant('rtc-reliable'), server);
    if (missing) return note('warn', `WebRTC cannot be shown here: ${missing}.`);
    // The transport signals with the fetch it is given: this one keeps the offer and the answer.
    const exchange: { url?: string; offer?: string; status?: number; location?: string | null; answer?: string; ms?: number } = {};
    const recordingFetch: typeof fetch = async (input, init) => {
      if (init?.method !== 'POST') return fetch(input, init);
      exchange.url = new URL(String(input), location.href).pathname;
      exchange.offer = String(init.body);
      const started = performance.now();
      const response = await fetch(input, init);
      exchange.ms = performance.now() - started;
      exchange.status = response.status;
      exchange.location = response.headers.get('location');
      exchange.answer = await response.clone().text();
      return response;
    };
    const started = nowMs();
    const client = createClient({ transports: 'webrtc', reconnect: false, connectors: { webrtc: (options) => connectWebRtc({ ...options, fetch: recordingFetch }) } });
    await client.connect();
    const openMs = nowMs() - started;
    try {
      const peer = (client.connection as WebRtcConnection).peerConnection!;
      const report = await peer.getStats();
      const entries: Record<string, unknown>[] = [];
      report.forEach((entry: Record<string, unknown>) => entries.push(entry));
      const byId = (id: unknown) => entries.find((e) => e.id === id);
      const transport = entries.find((e) => e.type === 'transport');
      const pair = byId(transport?.selectedCandidatePairId) ?? entries.find((e) => e.type === 'candidate-pair' && e.nominated);
      const local = byId(pair?.localCandidateId);
      const remote = byId(pair?.remoteCandidateId);
      const channels = entries.filter((e) => e.type === 'data-channel');
      const offerCandidates = sdpCandidates(exchange.offer ?? '');
      const answerCandidates = sdpCandidates(exchange.answer ?? '');
      const endpoint = (c: Record<string, unknown> | undefined) => (c ? `${String(c.address ?? c.ip)}:${String(c.port)} ${String(c.protocol)} ${String(c.candidateType)}` : '—');
      state.signalling = { offerCandidates: offerCandidates.length, answerCandidates: answerCandidates.length, status: exchange.status, selectedPair: pair ? `${endpoint(local)} ⇄ ${endpoint(remote)}` : null, channels: channels.map((c) => String(c.label)) };
      state.handshakes.webrtc = 'done';
      const sdp = (text: string) => h('pre', { class: 'sdp' }, ...text.split(/\r?\n/).filter(Boolean).flatMap((line) => [line.startsWith('a=candidate:') || line.startsWith('a=sctp-port') || line.startsWith('m=') ? h('b', {}, line) : line, '\n']));
      const candidateRows = [...offerCandidates.map((c) => ['offer (this browser)', ...c]), ...answerCandidates.map((c) => ['answer (server)', ...c])];
      return h(
        'div',
        {},
        note('info', `This page’s own WebRTC connection to the server, made just now: the transport’s signalling request was recorded as it went out and came back. Candidates are not trickled: the offer goes once this browser has gathered them, so one request does it all.`),
        h(
          'ol',
          { class: 'steps' },
          h('li', {}, h('strong', {}, `POST ${exchange.url ?? '/rtc'} · content-type: application/sdp: the offer`), h('span', { class: 'muted' }, `${formatNumber(exchange.offer?.length ?? 0)} bytes with ${offerCandidates.length} candidate${offerCandidates.length === 1 ? '' : 's'}`), h('div', { class: 'http-msg' }, sdp(exchange.offer ?? ''))),
          h('li', {}, h('strong', {}, `${exchange.status} · Location: ${exchange.location ?? '—'}: the answer`), h('span', { class: 'muted' }, `after ${formatMs(exchange.ms ?? 0)} (the server made its peer connection and gathered its candidates); ${answerCandidates.length} candidate${answerCandidates.length === 1 ? '' : 's'}`), h('div', { class: 'http-msg' }, sdp(exchange.answer ?? ''))),
          h('li', {}, h('strong', {}, 'ICE candidates both sides offered'), h('div', { class: 'table-wrap' }, table(['from', 'protocol', 'address', 'port', 'type'], candidateRows, { 'data-testid': 'rtc-candidates' }))),
          h('li', {}, h('strong', {}, `ICE connectivity checks chose: ${state.signalling.selectedPair ?? 'no pair reported'}`), h('span', { class: 'muted' }, `STUN binding requests over UDP between the candidates; round trip ${pair?.currentRoundTripTime !== undefined ? formatMs(Number(pair.currentRoundTripTime) * 1000) : '—'} (getStats)`)),
          h('li', { class: 'unseen' }, h('strong', {}, 'DTLS handshake, then SCTP association'), h('span', { class: 'muted' }, 'encrypted inside the UDP flow; the fingerprints in both SDPs (a=fingerprint) are what DTLS checks the certificates against.')),
          h('li', {}, h('strong', {}, `Data channels open after ${formatMs(openMs)}: ${channels.map((c) => `“${String(c.label)}”`).join(', ') || '—'}`), h('span', { class: 'muted' }, 'from this browser’s getStats(); “reliable” carries hello/welcome, “unreliable” is unordered with maxRetransmits 0, channels open on first use')),
        ),
      );
    } finally {
      client.close();
    }
  }

  let activeTab: (typeof tabs)[number] = 'websocket';
  function showTab(t: (typeof tabs)[number]): void {
    activeTab = t;
    for (const button of tabButtons) button.classList.toggle('active', button.dataset.tab === t);
    const view = handshakeViews[t];
    handshakeBody.replaceChildren(view ?? h('p', { class: 'empty' }, 'Capturing…'));
    if (view || t === 'websocket') return;
    const capture = t === 'webtransport' ? captureWebTransport() : t === 'webrtc' ? captureWebRtc() : captureHttp(t);
    capture.then(
      (element) => {
        handshakeViews[t] = element;
        if (activeTab === t) handshakeBody.replaceChildren(element);
      },
      (error: unknown) => {
        state.handshakes[t] = (error as Error).message;
        handshakeBody.replaceChildren(note('error', `Capture failed: ${(error as Error).message}`));
      },
    );
  }
  tabButtons.forEach((button) => button.addEventListener('click', () => showTab(button.dataset.tab as (typeof tabs)[number])));

  // ——— frame inspector buttons ———
  const act = (label: string, id: string, action: () => Promise<unknown>) =>
    h('button', { class: 'small', id, onclick: () => void action().then(refreshTap, (error: unknown) => (frameStatus.textContent = (error as Error).message)) }, label);
  const needClient = () => {
    if (!wsClient || wsClient.state !== 'open') throw new Error('not connected: press Reconnect');
    return wsClient;
  };
  const buttons = h(
    'div',
    { class: 'actions' },
    act('Send text', 'send-text', async () => needClient().send(needClient().id!, 'hello over a text frame')),
    act('Send binary', 'send-binary', async () => needClient().send(needClient().id!, Uint8Array.from({ length: 32 }, (_, i) => i))),
    act('Send 3 KiB (fragmented)', 'send-large', async () => needClient().send(needClient().id!, 'x'.repeat(3 * 1024))),
    act('Ping from the tap', 'send-ping', () => labJson(`/lab/taps/${tap?.id}/ping`, {}, 'POST')),
    act('Close', 'send-close', async () => needClient().close(1000, 'lab inspector done')),
    act('Reconnect', 'reconnect', openWebSocketSession),
    frameStatus,
  );

  // ——— bytes on the wire ———
  const wireSize = numberInput(64, { name: 'wire-size', min: 1, max: 65536 });
  const wireRun = h('button', { class: 'primary', id: 'measure-wire' }, 'Measure');
  const wireCanvas = h('canvas');
  const wireBox = h('div', { class: 'chart-box', hidden: true }, wireCanvas);
  const wireTable = h('div', { class: 'table-wrap', id: 'wire-table' });
  const wireTakeaways = h('div');
  async function measureWire(): Promise<void> {
    state.wireState = 'running';
    wireRun.disabled = true;
    const size = Math.min(65_536, Math.max(1, Number(wireSize.value)));
    const count = 20;
    const rows: { label: string; perHop: number | null; error?: string }[] = [];
    const wanted = VARIANTS.filter((v) => v.kind !== 'channels');
    for (const v of wanted) {
      const why = unavailable(v, server);
      if (why) {
        rows.push({ label: v.label, perHop: null, error: why });
        continue;
      }
      let client: SwitchyardClient | undefined;
      try {
        client = await connectClient(v.transport);
        const self = client;
        let arrived = 0;
        let allArrived: () => void = () => undefined;
        const everything = new Promise<void>((resolve) => (allArrived = resolve));
        self.on('message', () => {
          if (++arrived === count) allArrived();
        });
        // One round trip first: by its answer the server has sent and counted the welcome's bytes.
        await self.ping();
        const before = await serverView(self.id!);
        // Paced at 200 msg/s rather than one burst: a burst of datagrams overflows the datagram queues.
        for (let i = 0; i < count; i++) {
          self.send(self.id!, stampPayload(size, nowMs(), i), { lane: v.lane(i, 0) }).catch(() => undefined);
          await sleep(5);
        }
        // Datagrams may be lost: wait for all, at most 2 s.
        await Promise.race([everything, sleep(2_000)]);
        const after = await serverView(self.id!);
        rows.push({ label: v.label, perHop: before && after ? wireBytesPerHop([before.stats], [after.stats], count + arrived) : null, ...(arrived < count ? { error: `${count - arrived} of ${count} lost` } : {}) });
      } catch (error) {
        rows.push({ label: v.label, perHop: null, error: (error as Error).message });
      } finally {
        client?.close();
      }
    }
    state.wire = rows.map((r) => ({ transport: r.label, perMessage: r.perHop, error: r.error }));
    const payload = Math.max(size, 16);
    wireBox.hidden = false;
    setData(
      barChart('learn-wire', wireCanvas, { x: 'transport', y: { title: 'bytes per message hop' }, stacked: true }),
      [series('payload', rows.map((r) => (r.perHop === null ? 0 : Math.min(payload, r.perHop))), 0), series('envelope, framing, headers, polls, QUIC/TLS', rows.map((r) => (r.perHop === null ? 0 : Math.max(0, r.perHop - payload))), 1)],
      rows.map((r) => r.label),
    );
    wireTable.replaceChildren(
      table(
        ['transport', 'payload B', 'wire B per hop', 'overhead', 'note'],
        rows.map((r) => [r.label, formatNumber(payload), r.perHop === null ? '—' : formatNumber(r.perHop, 1), r.perHop === null ? '—' : `${formatNumber(r.perHop - payload, 1)} B (${formatNumber(r.perHop / payload, 2)}×)`, r.error ? h('span', { class: 'warn-text' }, r.error) : '']),
        { 'data-testid': 'wire-table' },
      ),
    );
    wireTakeaways.replaceChildren(wireBytesTakeaways(rows, payload));
    state.wireState = 'done';
    wireRun.disabled = false;
  }
  wireRun.addEventListener('click', () => void measureWire());

  append(
    root,
    h('div', { class: 'page-head' }, h('h2', {}, 'Learn: five ways to carry a message'), h('p', { class: 'lead' }, 'Everything on this page comes from real connections to this server: the handshakes, the frames and the byte counts are captured or counted, not drawn from a textbook.')),
    h('div', { class: 'transport-cards' }, ...cards.map((c) => c.element)),
    card('Handshakes', 'how each transport gets from nothing to “open”', h('div', { class: 'tabs' }, ...tabButtons), handshakeBody),
    card(
      'WebSocket frame inspector',
      'this browser’s WebSocket through the lab’s TCP tap: every frame both ways, as it was on the wire (client frames are masked, server frames are not). The tap splits server messages over 1 KiB into continuation frames, as RFC 6455 §5.4 allows an intermediary, and can send a ping of its own; the pong is Chromium’s automatic answer.',
      buttons,
      frameBody,
    ),
    card('Bytes on the wire per message', `20 messages to itself per transport, payload vs everything else per message hop (client → server or server → client). Measured by the server’s counters of that connection before and after (WebSocket: socket bytes; long-polling and polling: HTTP requests and responses, empty polls included; WebTransport: QUIC packets with TLS, as quiche counts them; WebRTC: DTLS records carrying SCTP, as the server’s getStats() counts them).`, h('div', { class: 'actions' }, h('label', { class: 'field' }, h('span', { class: 'field-label' }, 'Payload bytes'), wireSize), wireRun), wireBox, wireTable, wireTakeaways),
  );
  showTab('websocket');
  openWebSocketSession().catch((error: unknown) => (frameStatus.textContent = `WebSocket through the tap failed: ${(error as Error).message}`));
  return () => {
    for (const dispose of disposers) dispose();
    wsClient?.close();
    if (tap) void fetch(`/lab/taps/${tap.id}`, { method: 'DELETE' });
  };
}
