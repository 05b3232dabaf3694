/**
 * Reading a request body on the server, bounded: every HTTP handler that takes a body (long-polling
 * and polling POSTs, WebRTC offers, the lab's JSON) reads it here.
 */
import type { IncomingMessage } from 'node:http';

/** The whole body, or undefined once it is over `limit` (the rest is read and discarded). */
export function readBody(request: IncomingMessage, limit: number): Promise<Uint8Array | undefined> {
  return new Promise((resolve, reject) => {
    if (Number(request.headers['content-length'] ?? 0) > limit) {
      request.resume();
      resolve(undefined);
      return;
    }
    const chunks: Buffer[] = [];
    let length = 0;
    request.on('data', (chunk: Buffer) => {
      length += chunk.length;
      if (length > limit) {
        request.removeAllListeners('data');
        request.removeAllListeners('end');
        request.resume();
        resolve(undefined);
        return;
      }
      chunks.push(chunk);
    });
    request.on('end', () => resolve(new Uint8Array(Buffer.concat(chunks, length))));
    request.on('error', reject);
  });
}
