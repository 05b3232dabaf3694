/**
 * Real kernel packet loss between two namespaces: UDP counts, a TCP transfer that survives it, and
 * cleanup. Runs as root (CI is); elsewhere it is skipped with the reason canImpair() gives.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { lineFrom } from '../../test-support/child-output.ts';
import { canImpair, createImpairedPath, removeStalePaths, type ImpairedPath } from './netns.ts';

const capability = await canImpair();
const paths: ImpairedPath[] = [];
afterEach(async () => {
  await Promise.all(paths.splice(0).map((path) => path.destroy()));
});

const UDP_RECEIVER = `
const socket = require('node:dgram').createSocket({ type: 'udp4', recvBufferSize: 4 * 1024 * 1024 });
let count = 0;
socket.on('message', () => count++);
socket.bind(9999, process.argv[1], () => console.log('ready'));
process.stdin.on('data', () => { console.log('received ' + count); process.exit(0); });`;
const UDP_SENDER = `
const socket = require('node:dgram').createSocket('udp4');
let sent = 0;
// Paced (20 per millisecond-ish tick) so the receiver's socket buffer, not the path, never drops.
const burst = () => { for (let i = 0; i < 20 && sent < 2000; i++, sent++) socket.send(Buffer.alloc(200), 9999, process.argv[1]); if (sent < 2000) setTimeout(burst, 1); else setTimeout(() => socket.close(), 50); };
burst();`;

async function udpDelivered(path: ImpairedPath): Promise<number> {
  const receiver = path.spawn('server', process.execPath, ['-e', UDP_RECEIVER, path.serverAddress], { stdio: ['pipe', 'pipe', 'inherit'] });
  await lineFrom(receiver, /^ready/);
  const sender = path.spawn('client', process.execPath, ['-e', UDP_SENDER, path.serverAddress], { stdio: 'inherit' });
  await new Promise((resolve) => sender.once('exit', resolve));
  await new Promise((resolve) => setTimeout(resolve, 300));
  const report = lineFrom(receiver, /^received/);
  receiver.stdin!.write('report\n');
  return Number((await report).split(' ')[1]);
}

describe.skipIf(!capability.ok)(`impaired path (${capability.ok ? 'root' : (capability as { reason: string }).reason})`, () => {
  it('passes every UDP datagram at 0 % loss', async () => {
    const path = await createImpairedPath({ lossPercent: 0 });
    paths.push(path);
    expect(await udpDelivered(path)).toBe(2000);
    expect(await path.dropped()).toEqual({ serverToClient: 0, clientToServer: 0 });
  });

  it('drops about 5 % of UDP datagrams at 5 %, and counts them', async () => {
    const path = await createImpairedPath({ lossPercent: 5 });
    paths.push(path);
    const delivered = await udpDelivered(path);
    const lostPercent = ((2000 - delivered) / 2000) * 100;
    expect(lostPercent).toBeGreaterThan(2);
    expect(lostPercent).toBeLessThan(9);
    expect((await path.dropped()).clientToServer).toBe(2000 - delivered);
  });

  it('delivers a 2 MiB TCP transfer intact through 5 % loss (retransmission), with drops in both directions', async () => {
    const path = await createImpairedPath({ lossPercent: 5 });
    paths.push(path);
    const payload = randomBytes(2 * 1024 * 1024);
    const receiver = path.spawn(
      'server',
      process.execPath,
      [
        '-e',
        `const hash = require('node:crypto').createHash('sha256'); let n = 0;
         require('node:net').createServer((s) => { s.on('data', (d) => { hash.update(d); n += d.length; }); s.on('end', () => { console.log('got ' + n + ' ' + hash.digest('hex')); process.exit(0); }); })
           .listen(9998, process.argv[1], () => console.log('ready'));`,
        path.serverAddress,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await lineFrom(receiver, /^ready/);
    const result = lineFrom(receiver, /^got/);
    const sender = path.spawn('client', process.execPath, ['-e', `const s = require('node:net').connect(9998, process.argv[1], () => process.stdin.pipe(s));`, path.serverAddress], { stdio: ['pipe', 'inherit', 'inherit'] });
    sender.stdin!.end(payload);
    expect(await result).toBe(`got ${payload.length} ${createHash('sha256').update(payload).digest('hex')}`);
    const dropped = await path.dropped();
    expect(dropped.clientToServer).toBeGreaterThan(0);
    expect(dropped.serverToClient).toBeGreaterThanOrEqual(0);
  }, 60_000);

  it('changes loss live, refuses out-of-range loss, and removes everything on destroy', async () => {
    const path = await createImpairedPath({ lossPercent: 10 });
    paths.push(path);
    await path.setLoss(0);
    expect(await udpDelivered(path)).toBe(2000);
    await expect(path.setLoss(11)).rejects.toThrow(RangeError);
    await path.destroy();
    await path.destroy();
    const namespaces = execFileSync('ip', ['netns', 'list']).toString();
    expect(namespaces).not.toContain(path.serverNamespace);
    expect(namespaces).not.toContain(path.clientNamespace);
    expect(await removeStalePaths()).toBe(0);
  });
});
