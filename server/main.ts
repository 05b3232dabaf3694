/** `npm start`: the server with every transport, the lab, and development certificates. */
import { startServer } from './index.ts';

function flag(name: string): boolean | undefined {
  if (process.argv.includes(`--${name}`)) return true;
  const value = process.env[`SWITCHYARD_${name.toUpperCase().replaceAll('-', '_')}`];
  return value === undefined ? undefined : value === '1' || value === 'true';
}

function option(name: string): string | undefined {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 ? process.argv[index + 1] : process.env[`SWITCHYARD_${name.toUpperCase()}`];
}

const server = await startServer({
  host: option('host') ?? '127.0.0.1',
  port: Number(option('port') ?? 8080),
  labExperiments: flag('lab-experiments'),
});

const cert = server.certificate;
console.log(`Switchyard listening
  lab + HTTP      ${server.urls.http}/
  HTTPS           ${server.urls.https ?? '(no certificate)'}
  transports      ${server.transports.map((t) => `${t.name} ${t.path}`).join(' · ')}
  WebTransport    ${server.urls.webtransport ?? '(needs a certificate)'}
  certificate     ${cert ? `sha-256 ${cert.sha256Hex} (valid until ${cert.notAfter.toISOString()})` : 'none'}`);

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) process.exit(1);
    stopping = true;
    console.log('\nshutting down…');
    void server.close().then(() => process.exit(0));
  });
}
