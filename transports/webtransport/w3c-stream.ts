/**
 * A W3C WebTransport bidirectional stream (a browser's) as a DirectStream: a read loop hands each
 * chunk to the sink, pausing between chunks while reading is paused; writes go to the stream's
 * writer, and `queued` counts what they have not yet settled. Browser-safe: no Node imports.
 */
import type { BidirectionalStream, DirectStream, DirectStreamSink } from './direct-stream.ts';

export function w3cDirectStream(stream: BidirectionalStream, sink: DirectStreamSink): DirectStream {
  const writer = stream.writable.getWriter();
  let queued = 0;
  let paused = false;
  let resume: (() => void) | undefined;
  void (async () => {
    const reader = stream.readable.getReader();
    try {
      for (;;) {
        if (paused) await new Promise<void>((resolve) => (resume = resolve));
        const { value, done } = await reader.read();
        if (done) return sink.end(null);
        sink.data(value);
      }
    } catch (error) {
      sink.end(error instanceof Error ? error : new Error(String(error)));
    } finally {
      reader.releaseLock();
    }
  })();
  return {
    get queued() {
      return queued;
    },
    write(bytes) {
      queued += bytes.length;
      // A failed write surfaces as the session's close.
      const settled = (): void => {
        queued -= bytes.length;
        sink.writable();
      };
      writer.write(bytes).then(settled, settled);
    },
    end() {
      writer.close().catch(() => undefined);
    },
    setReading(reading) {
      paused = !reading;
      if (!reading) return;
      resume?.();
      resume = undefined;
    },
  };
}
