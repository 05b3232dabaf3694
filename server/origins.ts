/**
 * Which web pages may talk to this server, and under which host names (issue 11 item 5).
 *
 * - **Origin** (browsers send it on cross-origin fetches, on every WebSocket upgrade and on every
 *   WebTransport CONNECT): a request without one (Node, curl) or from the server's own origin is
 *   served; another origin only when listed in `allowedOrigins`. Allowed origins get CORS headers
 *   on the HTTP transports and `/info`, preflights included; the others get 403 before any
 *   transport sees the request.
 * - **Host** (DNS rebinding: a hostile name resolving to 127.0.0.1 makes the page same-origin
 *   with us): IP literals, `localhost` (and `*.localhost`), the advertised public host and
 *   `allowedHosts` are served; any other name gets 403. `allowedHosts: true` turns the check off
 *   (behind a proxy that checks names itself).
 *
 * The decisions are pure functions of header values; `originGuard` applies them to Node requests.
 */
import type http from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';

export interface OriginPolicyOptions {
  /** Origins (`https://app.example.com`) whose pages may connect; `'*'` allows any. Default: none but the server's own. */
  allowedOrigins?: readonly string[] | '*';
  /** Host names served besides IP literals, localhost and the public host; `true` serves any. */
  allowedHosts?: readonly string[] | true;
}

export interface OriginPolicy {
  /** The origins the server itself is reached at (its http and https URLs), known once it listens. */
  ownOrigins: () => readonly string[];
  /** The advertised host name, always served. */
  publicHost: string | undefined;
  options: OriginPolicyOptions;
}

export type Verdict = { ok: true; cors: boolean } | { ok: false; reason: string };

/** The host name of a `Host` header or `:authority` (`[::1]:8080` → `::1`), lowercased. */
export function hostName(authority: string): string {
  const value = authority.trim().toLowerCase();
  if (value.startsWith('[')) {
    const end = value.indexOf(']');
    return end > 0 ? value.slice(1, end) : value;
  }
  const colon = value.lastIndexOf(':');
  return colon >= 0 && value.indexOf(':') === colon ? value.slice(0, colon) : value;
}

function normalOrigin(origin: string): string | undefined {
  try {
    const url = new URL(origin);
    return url.origin === 'null' ? undefined : url.origin;
  } catch {
    return undefined;
  }
}

/** Whether a request naming `authority` as its host may be served. */
export function hostAllowed(authority: string | undefined, policy: OriginPolicy): boolean {
  const allowed = policy.options.allowedHosts;
  if (allowed === true) return true;
  // HTTP/1.0 requests may omit Host; they cannot be a browser's rebinding attack.
  if (authority === undefined || authority === '') return true;
  const name = hostName(authority);
  if (net.isIP(name) !== 0 || name === 'localhost' || name.endsWith('.localhost')) return true;
  if (policy.publicHost !== undefined && name === policy.publicHost.toLowerCase()) return true;
  return (allowed ?? []).some((host) => host.toLowerCase() === name);
}

/**
 * Decides a request from its `Origin` and `Host` (or `:authority`). `cors` says the origin is a
 * foreign one that was allowed, so the response must carry CORS headers.
 */
export function decide(origin: string | undefined, authority: string | undefined, policy: OriginPolicy): Verdict {
  if (!hostAllowed(authority, policy)) return { ok: false, reason: `host ${authority} is not served here (allowedHosts)` };
  if (origin === undefined) return { ok: true, cors: false };
  const normal = normalOrigin(origin);
  // Same origin: the page's host and port are the ones it asked (our HTTP and HTTPS share a port).
  if (normal !== undefined && authority !== undefined && new URL(normal).host === authority.toLowerCase()) return { ok: true, cors: false };
  if (normal !== undefined && policy.ownOrigins().includes(normal)) return { ok: true, cors: false };
  const allowed = policy.options.allowedOrigins;
  if (allowed === '*' || (normal !== undefined && (allowed ?? []).some((entry) => normalOrigin(entry) === normal))) return { ok: true, cors: true };
  return { ok: false, reason: `origin ${origin} is not allowed (allowedOrigins)` };
}

const PREFLIGHT_MAX_AGE_S = 600;

function refuse(response: http.ServerResponse, reason: string): void {
  response.writeHead(403, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify({ error: { code: 'ERR_ORIGIN', message: reason } }));
}

/**
 * The HTTP side of the policy: `request` returns true when it answered (a refusal or a preflight);
 * otherwise it has set the CORS headers the response needs. `upgrade` returns true when it refused.
 */
export function originGuard(policy: OriginPolicy): {
  request(request: http.IncomingMessage, response: http.ServerResponse): boolean;
  upgrade(request: http.IncomingMessage, socket: Duplex): boolean;
} {
  return {
    request(request, response) {
      const origin = request.headers.origin;
      const verdict = decide(origin, request.headers.host, policy);
      if (!verdict.ok) {
        refuse(response, verdict.reason);
        return true;
      }
      if (!verdict.cors) return false;
      response.setHeader('access-control-allow-origin', origin!);
      response.setHeader('vary', 'Origin');
      // WebRTC signalling names its session in Location (201 to an offer); a cross-origin page reads it.
      response.setHeader('access-control-expose-headers', 'Location');
      if (request.method === 'OPTIONS' && request.headers['access-control-request-method'] !== undefined) {
        response.writeHead(204, {
          // DELETE: a WebRTC client ends a signalling session it gave up on.
          'access-control-allow-methods': 'GET, POST, DELETE, OPTIONS',
          'access-control-allow-headers': request.headers['access-control-request-headers'] ?? 'content-type',
          'access-control-max-age': String(PREFLIGHT_MAX_AGE_S),
        });
        response.end();
        return true;
      }
      return false;
    },
    upgrade(request, socket) {
      const verdict = decide(request.headers.origin, request.headers.host, policy);
      if (verdict.ok) return false;
      const body = JSON.stringify({ error: { code: 'ERR_ORIGIN', message: verdict.reason } });
      socket.end(`HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
      return true;
    },
  };
}
