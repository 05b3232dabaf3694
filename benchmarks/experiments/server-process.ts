/**
 * The Switchyard server of an experiment, in its own process (inside the server namespace for the
 * head-of-line experiment), so its memory and CPU are its own. Prints one JSON line
 * `{ port, url, certificateSha256 }` once it listens. With an IPC channel (fork) it answers
 * `{ type: 'sample', clientId }` with that client's server-side queue, drop counter and close, the
 * router's counters and the process memory: what the backpressure experiment charts.
 *
 *   node --import tsx benchmarks/experiments/server-process.ts '{"host":"10.213.1.1"}'
 */
import { labPlugin } from '../../lab-ui/server/plugin.ts';
import { startServer } from '../../server/index.ts';
import type { CloseInfo, Connection } from '../../transports/transport.ts';
import type { ServerProcessOptions, ServerReady, ServerSample } from './server-process-protocol.ts';

const options = JSON.parse(process.argv[2] ?? '{}') as ServerProcessOptions;
const server = await startServer({
  host: options.host,
  port: 0,
  certificate: 'ephemeral',
  // The live network's server serves the lab too; its page is opened from a loopback port forward
  // (live-network.ts), so that origin may open WebTransport at this server's own address.
  ...(options.lab ? { plugins: [labPlugin({ experiments: false, ...(options.lab.staticDir ? { staticDir: options.lab.staticDir } : {}) })], allowedOrigins: options.lab.allowedOrigins } : {}),
  ...(options.transports ? { transports: options.transports } : {}),
  ...(options.backpressure ? { backpressure: options.backpressure } : {}),
  // Short long-poll holds so a consumer that stops polling is noticed within an experiment.
  longPolling: { holdMs: 5_000 },
  // The experiment shows what each slow-consumer policy does to a consumer that falls behind, so the
  // producer is not slowed down to the consumer's pace (the router's default).
  router: { pacePublishers: false },
});
const ready: ServerReady = { port: server.port, url: server.urls.http, certificateSha256: server.certificate!.sha256Hex };
process.stdout.write(`${JSON.stringify(ready)}\n`);

/** Close infos of watched connections, and the last connection seen per client. */
const closes = new Map<string, CloseInfo>();
const watched = new WeakSet<Connection>();
const lastConnection = new Map<string, Connection>();

function sample(clientId: string): ServerSample {
  const client = server.router.clients.get(clientId);
  const connection = client?.connection ?? lastConnection.get(clientId);
  if (connection && !watched.has(connection)) {
    watched.add(connection);
    lastConnection.set(clientId, connection);
    void connection.closed.then((info) => closes.set(clientId, info));
  }
  const stats = server.router.stats();
  const memory = process.memoryUsage();
  const open = connection?.state === 'open';
  return {
    connected: open,
    queuedBytes: open ? connection.queued.bytes : 0,
    queuedMessages: open ? connection.queued.messages : 0,
    dropped: connection?.stats().dropped ?? 0,
    close: closes.get(clientId) ?? null,
    routed: stats.routed,
    deliveries: stats.deliveries,
    refused: stats.refused,
    heapBytes: memory.heapUsed + memory.external,
    rssBytes: memory.rss,
  };
}

process.on('message', (message: { type: string; clientId: string }) => {
  if (message.type === 'sample') process.send?.({ type: 'sample', sample: sample(message.clientId) });
});
// The runner ends us by closing stdin (namespace spawns have no IPC) or the IPC channel.
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.on('disconnect', () => process.exit(0));
