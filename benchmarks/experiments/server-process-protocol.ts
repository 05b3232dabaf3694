/**
 * What an experiment's server process (server-process.ts) takes and prints: its own module, so the
 * runners that spawn it never import the process itself (nor, through it, the lab plugin).
 */
import type { SwitchyardServerOptions } from '../../server/index.ts';
import type { CloseInfo } from '../../transports/transport.ts';

export interface ServerProcessOptions {
  host: string;
  transports?: SwitchyardServerOptions['transports'];
  backpressure?: SwitchyardServerOptions['backpressure'];
  /** Serve the lab's pages too, to these page origins (the lab's live network: live-network.ts). */
  lab?: { allowedOrigins: string[]; /** Folder of the built lab to serve (default the plugin's, lab-ui/dist). */ staticDir?: string };
}

export interface ServerReady {
  port: number;
  url: string;
  certificateSha256: string;
}

export interface ServerSample {
  /** False once the client's connection is gone. */
  connected: boolean;
  queuedBytes: number;
  queuedMessages: number;
  /** Messages the slow-consumer policy dropped on this client's current connection. */
  dropped: number;
  /** How the server closed this client's connection, if it did. */
  close: CloseInfo | null;
  /** Router counters: messages routed, deliveries queued, deliveries refused by a full 'wait' queue. */
  routed: number;
  deliveries: number;
  refused: number;
  heapBytes: number;
  rssBytes: number;
}
