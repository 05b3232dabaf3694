/** `polling`, server side: the long-polling server with no hold — every GET is answered at once. */
import { HttpPollingServer, type HttpPollingServerOptions } from '../long-polling/server.ts';

export class PollingTransportServer extends HttpPollingServer {
  constructor(options: Omit<HttpPollingServerOptions, 'holdMs'> = {}) {
    super('polling', { ...options, holdMs: 0 }, { path: '/poll', holdMs: 0 });
  }
}
