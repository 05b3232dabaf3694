/**
 * The lab as a server plugin: the lab's API under `/lab/` (wire tap, HTTP captures, WebTransport
 * CONNECT records, server-side client stats, experiment runs) and the built lab's files at `/`.
 * Only `npm start` (app/main.ts) adds it; servers made with the library have none of it.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ServerPlugin, SwitchyardServer } from '../../server/index.ts';
import { staticFiles } from '../../server/static-files.ts';
import { createLabApi, type LabApi } from './lab-api.ts';

export const LAB_DIST = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist');

export interface LabPluginOptions {
  /** Folder of the built lab to serve at `/`; null serves none. Default lab-ui/dist. */
  staticDir?: string | null;
  /**
   * Let the lab start head-of-line and backpressure experiments on this machine (as root they
   * build network namespaces). Default: only when the server listens on a loopback address.
   */
  experiments?: boolean;
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

export function labPlugin(options: LabPluginOptions = {}): ServerPlugin {
  const serveFiles = options.staticDir === null ? undefined : staticFiles(options.staticDir ?? LAB_DIST);
  let lab: LabApi | undefined;
  return {
    started(server: SwitchyardServer) {
      lab = createLabApi({ router: server.router, host: server.host, port: () => server.port, experiments: options.experiments ?? isLoopback(server.host), staticDir: options.staticDir ?? undefined });
    },
    async handleRequest(request, response) {
      const pathname = (request.url ?? '/').split('?')[0]!;
      if (pathname.startsWith('/lab/') && lab) {
        lab.handle(request, response);
        return true;
      }
      return (await serveFiles?.(request, response)) ?? false;
    },
    webTransportConnect(request, status) {
      lab?.recordConnect(request, status);
    },
    async close() {
      await lab?.close();
    },
  };
}
