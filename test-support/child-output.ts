/** Reading a child process's output in tests. */
import type { ChildProcess } from 'node:child_process';

/** Resolves with the first stdout line matching `pattern`; rejects if the child exits before printing one. */
export function lineFrom(child: ChildProcess, pattern: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffer = '';
    child.stdout!.on('data', (data: Buffer) => {
      buffer += data.toString();
      const line = buffer.split('\n').find((l) => pattern.test(l));
      if (line) resolve(line);
    });
    child.once('exit', (code) => reject(new Error(`process exited (${code}) before printing ${pattern}: ${buffer}`)));
  });
}
