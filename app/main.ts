/** `npm start`: the server with every transport, the lab plugin, and a development certificate. */
import { startServer } from '../server/index.ts';
import { labPlugin } from '../lab-ui/server/plugin.ts';
import { parseCli, startupError, USAGE, UsageError, type CliOptions } from './cli.ts';

let cli: CliOptions;
try {
  cli = parseCli(process.argv.slice(2), process.env);
} catch (error) {
  if (!(error instanceof UsageError)) throw error;
  console.error(`switchyard: ${error.message}`);
  process.exit(2);
}
if (cli.help) {
  console.log(USAGE);
  process.exit(0);
}

let server;
try {
  server = await startServer({
    host: cli.host,
    port: cli.port,
    publicHost: cli.publicHost,
    certificate: cli.certificate,
    allowedOrigins: cli.allowedOrigins,
    allowedHosts: cli.allowedHosts,
    plugins: cli.lab ? [labPlugin({ experiments: cli.labExperiments })] : [],
    ...(cli.redis ? { cluster: { redis: cli.redis } } : {}),
  });
} catch (error) {
  console.error(`switchyard: ${startupError(error, cli)}`);
  process.exit(1);
}

const cert = server.certificate;
console.log(`Switchyard listening
  ${cli.lab ? 'lab + HTTP' : 'HTTP      '}      ${server.urls.http}/
  HTTPS           ${server.urls.https ?? '(no certificate)'}
  transports      ${server.transports.map((t) => `${t.name} ${t.path}`).join(' · ')}
  WebTransport    ${server.urls.webtransport ?? '(needs a certificate)'}
  certificate     ${cert ? `sha-256 ${cert.sha256Hex} (valid until ${cert.notAfter.toISOString()})` : 'none'}${cli.redis ? `
  cluster         node ${server.router.engine.status().node} on ${cli.redis}` : ''}`);

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) process.exit(1);
    stopping = true;
    console.log('\nshutting down…');
    void server.close().then(() => process.exit(0));
  });
}
