/**
 * `npm run experiment -- hol|backpressure [options]`: runs an experiment, prints a table, writes
 * JSON to bench-results/ (or --json FILE). Progress goes to stderr.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { SlowConsumerPolicy } from '../../transports/transport.ts';
import { BACKPRESSURE_DEFAULTS, BACKPRESSURE_TRANSPORTS, POLICIES, runBackpressure, type BackpressureTransport } from './backpressure.ts';
import { formatBackpressure, formatHol } from './format.ts';
import { HOL_DEFAULTS, HOL_VARIANTS, runHol, type HolVariant } from './hol.ts';
import { ROOT } from './processes.ts';

const HELP = `Usage: npm run experiment -- <hol|backpressure> [options]

hol — head-of-line blocking: ${HOL_DEFAULTS.flows} flows of numbered messages at a fixed rate over one connection, across a lossy path
  --loss N            packet loss each way, 0–10 % (whole percents on the nftables path; default ${HOL_DEFAULTS.lossPercent})
  --delay MS          one-way delay (TUN path and UDP relay; the nftables path cannot delay; default ${HOL_DEFAULTS.delayMs})
  --rate-mbit N       rate limit each way (TUN path, or tc tbf on the nftables path; not the relay)
  --seed N            seed of the TUN forwarder's loss dice (default ${HOL_DEFAULTS.seed})
  --transports LIST   variants: ${HOL_VARIANTS.join(', ')}
                      ('webtransport', 'webrtc' = their three variants each; default all)
  --duration MS       per variant, warm-up included (default ${HOL_DEFAULTS.durationMs})
  --warmup MS         not analysed (default ${HOL_DEFAULTS.warmupMs})
  --flows N           (default ${HOL_DEFAULTS.flows})
  --rate N            messages/s per flow (default ${HOL_DEFAULTS.ratePerFlow})
  --size B            message size (default ${HOL_DEFAULTS.messageSize})
  --stall-ms N        fixed stall threshold (default: median latency + --stall-extra-ms)
  --stall-extra-ms N  (default ${HOL_DEFAULTS.stallExtraMs})
  --impairment KIND   auto | netns | relay (default auto: namespaces when root on Linux)

backpressure — fast producer, slow consumer, per server slow-consumer policy (loopback)
  --policies LIST     ${POLICIES.join(', ')} (default all)
  --transports LIST   consumer transports: ${BACKPRESSURE_TRANSPORTS.join(', ')} (default all)
  --duration MS       producing time per run (default ${BACKPRESSURE_DEFAULTS.durationMs})
  --rate N            producer messages/s (default ${BACKPRESSURE_DEFAULTS.producerRate})
  --size B            message size (default ${BACKPRESSURE_DEFAULTS.messageSize})
  --work-ms N         consumer CPU per message (default ${BACKPRESSURE_DEFAULTS.consumerWorkMs})
  --high-water B      server queue high-water mark (default ${BACKPRESSURE_DEFAULTS.highWaterMark})
  --max-queued B      server queue hard limit (default ${BACKPRESSURE_DEFAULTS.maxQueuedBytes})

Both: --json FILE (default bench-results/experiment-<name>-<date>.json), --help
Examples: npm run experiment -- hol --loss 2 --delay 20
          npm run experiment -- hol --loss 5 --rate-mbit 2 --transports websocket,webtransport-channels
          npm run experiment -- backpressure --policies drop-oldest,disconnect --transports websocket`;

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    help: { type: 'boolean', short: 'h' },
    json: { type: 'string' },
    loss: { type: 'string' },
    'rate-mbit': { type: 'string' },
    delay: { type: 'string' },
    seed: { type: 'string' },
    transports: { type: 'string' },
    policies: { type: 'string' },
    duration: { type: 'string' },
    warmup: { type: 'string' },
    flows: { type: 'string' },
    rate: { type: 'string' },
    size: { type: 'string' },
    'stall-ms': { type: 'string' },
    'stall-extra-ms': { type: 'string' },
    impairment: { type: 'string' },
    'work-ms': { type: 'string' },
    'high-water': { type: 'string' },
    'max-queued': { type: 'string' },
  },
});

/** A numeric option, or undefined when absent; exits on garbage. */
function number(name: keyof typeof args): number | undefined {
  const raw = args[name];
  if (raw === undefined || typeof raw === 'boolean') return undefined;
  const value = Number(raw);
  if (!Number.isFinite(value)) fail(`--${name} wants a number, got '${raw}'`);
  return value;
}

/** A comma-separated option whose items must be among `allowed` (after `expand`). */
function list<T extends string>(name: 'transports' | 'policies', allowed: readonly T[], expand: (item: string) => string[] = (item) => [item]): T[] | undefined {
  const raw = args[name];
  if (raw === undefined) return undefined;
  const items = raw.split(',').flatMap((item) => expand(item.trim()));
  for (const item of items) if (!allowed.includes(item as T)) fail(`--${name}: '${item}' is not one of ${allowed.join(', ')}`);
  return items as T[];
}

function fail(message: string): never {
  process.stderr.write(`${message}\n\n${HELP}\n`);
  process.exit(2);
}

async function save(name: string, result: object): Promise<string> {
  const file = args.json ?? path.join(ROOT, 'bench-results', `experiment-${name}-${new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)}.json`);
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, `${JSON.stringify(result, null, 2)}\n`);
  return file;
}

async function main(): Promise<void> {
  const [experiment] = positionals;
  if (args.help || !experiment) {
    process.stdout.write(`${HELP}\n`);
    return;
  }
  if (experiment === 'hol') {
    const impairment = args.impairment;
    if (impairment !== undefined && impairment !== 'auto' && impairment !== 'tun' && impairment !== 'netns' && impairment !== 'relay') fail(`--impairment: auto, tun, netns or relay, got '${impairment}'`);
    const result = await runHol({
      lossPercent: number('loss'),
      rateMbit: number('rate-mbit'),
      delayMs: number('delay'),
      seed: number('seed'),
      variants: list<HolVariant>('transports', HOL_VARIANTS, (item) => (item === 'webtransport' || item === 'webrtc' ? HOL_VARIANTS.filter((v) => v.startsWith(`${item}-`)) : [item])),
      durationMs: number('duration'),
      warmupMs: number('warmup'),
      flows: number('flows'),
      ratePerFlow: number('rate'),
      messageSize: number('size'),
      stallThresholdMs: number('stall-ms'),
      stallExtraMs: number('stall-extra-ms'),
      impairment,
      onProgress: (event) => {
        if (event.type === 'path') process.stderr.write(`path: ${event.impairment.note}\n`);
        else if (event.type === 'variant-start') process.stderr.write(`[${event.index + 1}/${event.of}] ${event.variant}…\n`);
      },
    });
    process.stdout.write(`${formatHol(result)}\n\nJSON: ${await save('hol', result)}\n`);
  } else if (experiment === 'backpressure') {
    const result = await runBackpressure({
      policies: list<SlowConsumerPolicy>('policies', POLICIES),
      transports: list<BackpressureTransport>('transports', BACKPRESSURE_TRANSPORTS),
      durationMs: number('duration'),
      producerRate: number('rate'),
      messageSize: number('size'),
      consumerWorkMs: number('work-ms'),
      highWaterMark: number('high-water'),
      maxQueuedBytes: number('max-queued'),
      onProgress: (event) => {
        if (event.type === 'run-start') process.stderr.write(`[${event.index + 1}/${event.of}] ${event.transport} ${event.policy}…\n`);
      },
    });
    process.stdout.write(`${formatBackpressure(result)}\n\nJSON: ${await save('backpressure', result)}\n`);
  } else fail(`unknown experiment '${experiment}'`);
}

// Ctrl-C: exit through 'exit' handlers, so the namespaces are deleted; our children exit when their stdin closes.
process.on('SIGINT', () => process.exit(130));
await main();
// Clients and timers of the runs may linger (unref'd or not): the CLI is done.
process.exit(0);
