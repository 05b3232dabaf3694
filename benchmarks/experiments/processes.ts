/**
 * Child processes of the experiments: TypeScript entry points run with tsx, and their stdout read
 * as JSON lines.
 */
import type { ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const HERE = path.dirname(fileURLToPath(import.meta.url));

/** `node --import tsx <script> ...args` for one of this folder's scripts (cwd must be ROOT). */
export function tsArgs(script: string, ...args: string[]): string[] {
  return ['--import', 'tsx', path.join(HERE, script), ...args];
}

/** Reads a child's stdout one line at a time. */
export class LineReader {
  readonly #lines: string[] = [];
  #waiter: ((line: string | null) => void) | undefined;
  #ended = false;

  constructor(readonly child: ChildProcess) {
    const input = createInterface({ input: child.stdout! });
    input.on('line', (line) => {
      if (this.#waiter) {
        const waiter = this.#waiter;
        this.#waiter = undefined;
        waiter(line);
      } else this.#lines.push(line);
    });
    input.on('close', () => {
      this.#ended = true;
      this.#waiter?.(null);
    });
  }

  /** The next line; rejects if the process ends first or `timeoutMs` passes. */
  next(timeoutMs: number, what: string): Promise<string> {
    const queued = this.#lines.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.#ended) return Promise.reject(new Error(`process ended before ${what}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiter = undefined;
        reject(new Error(`no ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiter = (line) => {
        clearTimeout(timer);
        if (line === null) reject(new Error(`process ended before ${what}`));
        else resolve(line);
      };
    });
  }

  /** The next line parsed as JSON. */
  async json<T>(timeoutMs: number, what: string): Promise<T> {
    return JSON.parse(await this.next(timeoutMs, what)) as T;
  }
}

/** Ends a child we started: closes its stdin (it exits on that), and kills it if it lingers. */
export async function stopChild(child: ChildProcess, graceMs = 2_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.stdin?.end();
  if (child.connected) child.disconnect();
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/**
 * Raises a measuring process's CPU priority (root only; elsewhere a no-op): on a shared machine the
 * experiment must show the network's effect, not other processes' load. Our processes are light
 * (a few hundred messages a second), so they cannot starve the machine.
 */
export function raisePriority(child: ChildProcess): ChildProcess {
  try {
    if (child.pid !== undefined) os.setPriority(child.pid, -10);
  } catch {
    // Not permitted (not root): run at the normal priority.
  }
  return child;
}
