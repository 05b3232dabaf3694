/**
 * One cluster node in its own process, for tests that kill it with SIGKILL: `node --import tsx
 * test-support/cluster-node.ts <json>` with `{ redis, router?, cluster? }` starts a Switchyard server on a
 * free port sharing that Redis and prints `{ "port": n, "node": id }` once it listens.
 */
import { startServer, type ClusterOptions, type RouterOptions } from '../server/index.ts';

const { redis, router, cluster } = JSON.parse(process.argv[2]!) as { redis: string; router?: RouterOptions; cluster?: Omit<ClusterOptions, 'redis'> };
const server = await startServer({ port: 0, certificate: 'ephemeral', longPolling: { holdMs: 5_000 }, cluster: { ...cluster, redis }, router });
process.stdout.write(`${JSON.stringify({ port: server.port, node: server.router.engine.status().node })}\n`);
process.on('disconnect', () => void server.close().then(() => process.exit(0)));
