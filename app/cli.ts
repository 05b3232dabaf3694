/**
 * `npm start`'s command line: flags (node:util parseArgs, strict) and their SWITCHYARD_* variables,
 * turned into server options or a one-line error. Pure: no process, no I/O.
 */
import { parseArgs } from 'node:util';

export const USAGE = `Usage: npm start -- [options]

Starts the Switchyard server with every transport and the lab.

Options:
  --port <n>              TCP port (HTTP, HTTPS, WebSocket, polling) and UDP port (WebTransport); 0 picks one. Default 8080 (SWITCHYARD_PORT)
  --host <address>        interface to listen on. Default 127.0.0.1 (SWITCHYARD_HOST)
  --public-host <name>    host name clients are told to use, e.g. chat.example.com (SWITCHYARD_PUBLIC_HOST)
  --cert <file>           PEM certificate (with --key); default: a generated 14-day development certificate (SWITCHYARD_CERT)
  --key <file>            PEM private key of --cert (SWITCHYARD_KEY)
  --allowed-origin <url>  a web origin whose pages may connect (repeatable; '*' for any) (SWITCHYARD_ALLOWED_ORIGINS, comma-separated)
  --allowed-host <name>   a host name served besides IP addresses and localhost (repeatable) (SWITCHYARD_ALLOWED_HOSTS, comma-separated)
  --lab-experiments       let the lab run experiments even when not on a loopback address (SWITCHYARD_LAB_EXPERIMENTS=1)
  --redis <url>           run as one node of a cluster sharing this Redis, e.g. redis://127.0.0.1:6379 (SWITCHYARD_REDIS)
  --no-lab                serve the transports only, without the lab
  -h, --help              show this help`;

export interface CliOptions {
  help: boolean;
  host: string;
  port: number;
  publicHost: string | undefined;
  certificate: { certFile: string; keyFile: string } | 'generate';
  allowedOrigins: string[] | '*';
  allowedHosts: string[];
  labExperiments: boolean | undefined;
  lab: boolean;
  /** Redis URL of the cluster this process joins; undefined: a server on its own. */
  redis: string | undefined;
}

/** A command-line mistake: printed as one line, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

function list(value: string | undefined): string[] {
  return (value ?? '').split(',').map((entry) => entry.trim()).filter(Boolean);
}

function portOf(text: string, source: string): number {
  if (!/^\d+$/.test(text) || Number(text) > 65_535) throw new UsageError(`${source} must be a port number from 0 to 65535, not '${text}'`);
  return Number(text);
}

export function parseCli(argv: readonly string[], env: Record<string, string | undefined>): CliOptions {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        port: { type: 'string' },
        host: { type: 'string' },
        'public-host': { type: 'string' },
        cert: { type: 'string' },
        key: { type: 'string' },
        'allowed-origin': { type: 'string', multiple: true },
        'allowed-host': { type: 'string', multiple: true },
        'lab-experiments': { type: 'boolean' },
        'no-lab': { type: 'boolean' },
        redis: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    // parseArgs's messages are long and mention the API; keep the gist and point at --help.
    const message = (error as Error).message.split('. ')[0]!.replace(/^Unknown option/, 'unknown option');
    throw new UsageError(`${message} (see --help)`);
  }
  const { values } = parsed;
  const portText = values.port ?? env.SWITCHYARD_PORT;
  const certFile = values.cert ?? env.SWITCHYARD_CERT;
  const keyFile = values.key ?? env.SWITCHYARD_KEY;
  if ((certFile === undefined) !== (keyFile === undefined)) throw new UsageError('--cert and --key go together');
  const origins = values['allowed-origin'] ?? list(env.SWITCHYARD_ALLOWED_ORIGINS);
  for (const origin of origins) {
    if (origin === '*') continue;
    try {
      if (new URL(origin).origin === 'null') throw new Error();
    } catch {
      throw new UsageError(`--allowed-origin must be an origin like https://app.example.com, not '${origin}'`);
    }
  }
  const redis = values.redis ?? env.SWITCHYARD_REDIS;
  if (redis !== undefined && !/^rediss?:\/\/[^\s]+$/.test(redis)) throw new UsageError(`--redis must be a URL like redis://127.0.0.1:6379, not '${redis}'`);
  const experimentsEnv = env.SWITCHYARD_LAB_EXPERIMENTS;
  return {
    help: values.help ?? false,
    host: values.host ?? env.SWITCHYARD_HOST ?? '127.0.0.1',
    port: portText === undefined ? 8080 : portOf(portText, values.port === undefined ? 'SWITCHYARD_PORT' : '--port'),
    publicHost: values['public-host'] ?? env.SWITCHYARD_PUBLIC_HOST,
    certificate: certFile !== undefined && keyFile !== undefined ? { certFile, keyFile } : 'generate',
    allowedOrigins: origins.includes('*') ? '*' : origins,
    allowedHosts: values['allowed-host'] ?? list(env.SWITCHYARD_ALLOWED_HOSTS),
    labExperiments: values['lab-experiments'] ?? (experimentsEnv === undefined ? undefined : experimentsEnv === '1' || experimentsEnv === 'true'),
    lab: !(values['no-lab'] ?? false),
    redis,
  };
}

/** A failure to start, as one line: a taken port names the flag that changes it. */
export function startupError(error: unknown, options: Pick<CliOptions, 'host' | 'port'>): string {
  const code = (error as NodeJS.ErrnoException).code ?? ((error as Error).cause as NodeJS.ErrnoException | undefined)?.code;
  const message = (error as Error).message;
  if (code === 'EADDRINUSE' || /EADDRINUSE|in use/i.test(message)) return `port ${options.port} is already in use on ${options.host}: choose another with --port (or SWITCHYARD_PORT)`;
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') return `cannot listen on ${options.host}: no such local address (--host)`;
  if (code === 'EACCES') return `not allowed to listen on port ${options.port} (ports below 1024 need privileges): choose another with --port`;
  return message.split('\n')[0]!;
}
