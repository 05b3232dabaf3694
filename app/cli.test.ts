/**
 * `npm start`'s command line: flags and variables parsed strictly, one-line errors with exit code
 * 2 for bad flags and values, --help, and a taken port named with the flag that changes it — the
 * last three through the real entry point in a child process.
 */
import { execFile } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parseCli, UsageError } from './cli.ts';

const run = promisify(execFile);
const MAIN = path.join(import.meta.dirname, 'main.ts');

async function start(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const { SWITCHYARD_PORT: _ignored, ...env } = process.env;
  return run(process.execPath, ['--import', 'tsx', MAIN, ...args], { timeout: 60_000, env }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }),
  );
}

describe('parseCli', () => {
  it('reads flags, then SWITCHYARD_* variables, then defaults', () => {
    expect(parseCli([], {})).toMatchObject({ host: '127.0.0.1', port: 8080, certificate: 'generate', allowedOrigins: [], lab: true, help: false });
    expect(parseCli(['--port', '0', '--host', '0.0.0.0', '--public-host', 'chat.example.com', '--allowed-origin', 'http://localhost:5173', '--allowed-origin', 'https://app.example', '--no-lab'], {})).toMatchObject({
      port: 0,
      host: '0.0.0.0',
      publicHost: 'chat.example.com',
      allowedOrigins: ['http://localhost:5173', 'https://app.example'],
      lab: false,
    });
    expect(parseCli([], { SWITCHYARD_PORT: '9000', SWITCHYARD_ALLOWED_ORIGINS: 'https://a.example, https://b.example', SWITCHYARD_LAB_EXPERIMENTS: '1' })).toMatchObject({ port: 9000, allowedOrigins: ['https://a.example', 'https://b.example'], labExperiments: true });
    expect(parseCli(['--cert', 'c.pem', '--key', 'k.pem'], {}).certificate).toEqual({ certFile: 'c.pem', keyFile: 'k.pem' });
    expect(parseCli(['--allowed-origin', '*'], {}).allowedOrigins).toBe('*');
    expect(parseCli(['-h'], {}).help).toBe(true);
    expect(parseCli([], {}).redis).toBeUndefined();
    expect(parseCli(['--redis', 'redis://127.0.0.1:6379'], {}).redis).toBe('redis://127.0.0.1:6379');
    expect(parseCli([], { SWITCHYARD_REDIS: 'redis://10.0.0.5:6380' }).redis).toBe('redis://10.0.0.5:6380');
    expect(() => parseCli(['--redis', '127.0.0.1:6379'], {})).toThrow(UsageError);
  });

  it('refuses bad values and unknown flags with a one-line UsageError', () => {
    const message = (args: string[], env: Record<string, string> = {}) => {
      try {
        parseCli(args, env);
      } catch (error) {
        expect(error).toBeInstanceOf(UsageError);
        return (error as Error).message;
      }
      throw new Error(`accepted ${args.join(' ')}`);
    };
    expect(message(['--port', 'notaport'])).toBe("--port must be a port number from 0 to 65535, not 'notaport'");
    expect(message(['--port', '70000'])).toBe("--port must be a port number from 0 to 65535, not '70000'");
    expect(message([], { SWITCHYARD_PORT: '-1' })).toBe("SWITCHYARD_PORT must be a port number from 0 to 65535, not '-1'");
    expect(message(['--prot', '8080'])).toMatch(/^unknown option '--prot' \(see --help\)$/);
    expect(message(['--port'])).toMatch(/--port.*\(see --help\)$/);
    expect(message(['--cert', 'c.pem'])).toBe('--cert and --key go together');
    expect(message(['--allowed-origin', 'example.com'])).toMatch(/^--allowed-origin must be an origin/);
    for (const args of [['--port', 'notaport'], ['--prot', '1'], ['--port']]) expect(message(args)).not.toContain('\n');
  });
});

describe('npm start (app/main.ts)', () => {
  it('--help prints the flags and exits 0; a bad flag or value is one line on stderr and exit 2', async () => {
    const help = await start(['--help']);
    expect([help.code, help.stdout]).toEqual([0, expect.stringContaining('--allowed-origin <url>')]);
    for (const [args, line] of [
      [['--port', 'notaport'], "switchyard: --port must be a port number from 0 to 65535, not 'notaport'\n"],
      [['--port', '70000'], "switchyard: --port must be a port number from 0 to 65535, not '70000'\n"],
      [['--potr', '1'], "switchyard: unknown option '--potr' (see --help)\n"],
    ] as const) {
      const result = await start([...args]);
      expect([result.code, result.stderr, result.stdout]).toEqual([2, line, '']);
    }
  }, 120_000);

  it('a port in use says so and names --port', async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as net.AddressInfo).port;
    try {
      const result = await start(['--port', String(port), '--no-lab']);
      expect([result.code, result.stderr]).toEqual([1, `switchyard: port ${port} is already in use on 127.0.0.1: choose another with --port (or SWITCHYARD_PORT)\n`]);
    } finally {
      taken.close();
    }
  }, 60_000);
});
