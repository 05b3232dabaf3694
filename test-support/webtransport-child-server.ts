/**
 * A WebTransport engine server in its own process, for tests that kill it with SIGKILL (a crash:
 * no CONNECTION_CLOSE is sent) or need its event loop apart from the client's. Started by
 * `startWebTransportChild` (webtransport-echo.ts) with `{ port, certPem, keyPem }`; it serves `/t`
 * (datagrams and bidirectional streams echoed) and prints `{ "port": n }` once bound.
 */
import { WebTransportServer } from '../transports/webtransport/engine/server.ts';
import { echoDatagrams, echoStreams } from './webtransport-echo.ts';

const { port, certPem, keyPem } = JSON.parse(process.argv[2]!) as { port: number; certPem: string; keyPem: string };
const server = new WebTransportServer({ port, certPem, keyPem }).route('/t');
server.onSession((session) => {
  void echoDatagrams(session).catch(() => undefined);
  void echoStreams(session).catch(() => undefined);
});
const bound = await server.listen();
process.stdout.write(`${JSON.stringify({ port: bound.port })}\n`);
