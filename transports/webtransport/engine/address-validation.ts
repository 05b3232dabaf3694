/**
 * Stateless QUIC server defences, sans-IO (RFC 9000 §8.1 and §10.3):
 * - Retry tokens: an HMAC over the client's address, the connection ids and the time, so the
 *   server keeps no state for a client until it has proved it receives at its address;
 * - the anti-amplification budget: before that proof, at most 3x the bytes received are sent;
 * - stateless reset tokens derived from a static key, so that a restarted server can tell a
 *   client of a connection it no longer knows.
 */
import { createCipheriv, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Host } from '@matrixai/quic/native/index.js';

/** RFC 9000 §8.1: an unvalidated address gets at most this many times the bytes it sent. */
export const AMPLIFICATION_FACTOR = 3;
/** A Retry token is good for this long: one round trip, with a wide margin for slow paths. */
export const RETRY_TOKEN_LIFETIME_MS = 10_000;
const TOKEN_VERSION = 1;
const MAC_LENGTH = 16;
const RESET_TOKEN_LENGTH = 16;
/** RFC 9000 §10.3: a stateless reset shorter than this cannot be told from noise by the peer. */
const MIN_STATELESS_RESET = 21;
/** Our resets need no more: a first byte, unpredictable bits that pass for a header, the token. */
const MAX_STATELESS_RESET = 43;

/** The two keys a server derives from one static secret. */
export interface QuicServerKeys {
  retry: Buffer;
  reset: Buffer;
}

/**
 * Derives the Retry and reset keys from a static secret (HKDF-SHA256, one label each): the same
 * secret after a restart gives the same keys, which is what makes a stateless reset recognisable.
 */
export function deriveServerKeys(secret: Uint8Array | string): QuicServerKeys {
  const material = typeof secret === 'string' ? Buffer.from(secret) : secret;
  const derive = (label: string) => Buffer.from(hkdfSync('sha256', material, 'switchyard-quic', label, 32));
  return { retry: derive('retry token'), reset: derive('stateless reset') };
}

function addressBytes(peer: Host): Buffer {
  return Buffer.from(`${peer.host}|${peer.port}`);
}

/**
 * Mints and checks Retry tokens: `version | issued ms (8) | odcid length (1) | odcid | mac (16)`,
 * where the mac covers the client's address and port, the time, the original DCID and the
 * connection id we chose in the Retry (which the client's next Initial carries as its DCID).
 */
export class RetryTokens {
  constructor(
    readonly key: Buffer,
    readonly lifetimeMs = RETRY_TOKEN_LIFETIME_MS,
  ) {}

  mint(peer: Host, originalDcid: Uint8Array, retryScid: Uint8Array, now = Date.now()): Uint8Array {
    const head = Buffer.alloc(10);
    head[0] = TOKEN_VERSION;
    head.writeBigUInt64BE(BigInt(now), 1);
    head[9] = originalDcid.length;
    return Buffer.concat([head, originalDcid, this.#mac(head, originalDcid, retryScid, peer)]);
  }

  /** The original DCID when the token is ours, fresh, for this address and this DCID; else null. */
  validate(token: Uint8Array, peer: Host, dcid: Uint8Array, now = Date.now()): Uint8Array | null {
    const bytes = Buffer.from(token.buffer, token.byteOffset, token.byteLength);
    if (bytes.length < 10 + MAC_LENGTH || bytes[0] !== TOKEN_VERSION) return null;
    const length = bytes[9]!;
    if (bytes.length !== 10 + length + MAC_LENGTH) return null;
    const issued = Number(bytes.readBigUInt64BE(1));
    if (issued > now + 1_000 || now - issued > this.lifetimeMs) return null;
    const head = bytes.subarray(0, 10);
    const originalDcid = bytes.subarray(10, 10 + length);
    const mac = bytes.subarray(10 + length);
    if (!timingSafeEqual(mac, this.#mac(head, originalDcid, dcid, peer))) return null;
    return Uint8Array.from(originalDcid);
  }

  #mac(head: Uint8Array, originalDcid: Uint8Array, retryScid: Uint8Array, peer: Host): Buffer {
    return createHmac('sha256', this.key).update(head).update(originalDcid).update(retryScid).update(addressBytes(peer)).digest().subarray(0, MAC_LENGTH);
  }
}

/** The stateless reset token for one of our connection ids: HMAC(reset key, cid), 16 bytes. */
export function statelessResetToken(resetKey: Buffer, cid: Uint8Array): Buffer {
  return createHmac('sha256', resetKey).update(cid).digest().subarray(0, RESET_TOKEN_LENGTH);
}

/** The token as quiche's config wants it: a u128 read big-endian. */
export function resetTokenBigint(token: Uint8Array): bigint {
  return BigInt(`0x${Buffer.from(token).toString('hex')}`);
}

/**
 * A stateless reset answering a short-header packet for a connection id we do not know: random
 * bytes that look like a short header, ending in that id's token. It is always shorter than the
 * packet that triggered it (no reset loops, no amplification); null when that would be too short.
 */
export function statelessResetPacket(resetKey: Buffer, dcid: Uint8Array, triggerLength: number): Uint8Array | null {
  const length = Math.min(triggerLength - 1, MAX_STATELESS_RESET);
  if (length < MIN_STATELESS_RESET) return null;
  const packet = randomBytes(length);
  packet[0] = 0x40 | (packet[0]! & 0x3f); // header form 0, fixed bit 1
  statelessResetToken(resetKey, dcid).copy(packet, length - RESET_TOKEN_LENGTH);
  return packet;
}

/** RFC 9001 §5.2: the salt that turns a client's first DCID into the QUIC v1 Initial secrets. */
const INITIAL_SALT_V1 = Buffer.from('38762cf7f55934b34d179ae6a4c80cadccbb7f0a', 'hex');
const QUIC_V1 = 0x00000001;
/** RFC 9000 §20.1. */
export const INVALID_TOKEN = 0x0b;
const FRAME_CONNECTION_CLOSE = 0x1c;

/** TLS 1.3's HKDF-Expand-Label with an empty context, for outputs of one SHA-256 block or less. */
function expandLabel(secret: Buffer, label: string, length: number): Buffer {
  const full = Buffer.from(`tls13 ${label}`);
  const info = Buffer.concat([Buffer.from([length >> 8, length & 0xff, full.length]), full, Buffer.from([0, 1])]);
  return createHmac('sha256', secret).update(info).digest().subarray(0, length);
}

/**
 * A server's Initial packet closing the connection with `code` (a QUIC transport error), readable
 * by the client that sent an Initial to `clientDcid` from `clientScid`: RFC 9001 §5 packet
 * protection with the Initial keys, which anyone can derive, so nothing is kept. Used for
 * INVALID_TOKEN (RFC 9000 §8.1.3), where quiche, once it has read the ClientHello, would put the
 * close in a Handshake packet the client cannot read yet.
 */
export function initialClosePacket(clientDcid: Uint8Array, clientScid: Uint8Array, code: number, reason: string): Buffer {
  const initialSecret = createHmac('sha256', INITIAL_SALT_V1).update(clientDcid).digest();
  const secret = expandLabel(initialSecret, 'server in', 32);
  const key = expandLabel(secret, 'quic key', 16);
  const iv = expandLabel(secret, 'quic iv', 12);
  const hp = expandLabel(secret, 'quic hp', 16);
  const reasonBytes = Buffer.from(reason).subarray(0, 60);
  // CONNECTION_CLOSE: type, error code, frame type 0, reason (one-byte varints: all below 64).
  const payload = Buffer.concat([Buffer.from([FRAME_CONNECTION_CLOSE, code, 0, reasonBytes.length]), reasonBytes]);
  const packetNumber = Buffer.from([0, 0]);
  const length = packetNumber.length + payload.length + 16;
  const header = Buffer.concat([
    // Long header, Initial, two-byte packet number; version; DCID (the client's SCID); our SCID;
    // no token; length (two-byte varint).
    Buffer.from([0xc1, QUIC_V1 >>> 24, (QUIC_V1 >>> 16) & 0xff, (QUIC_V1 >>> 8) & 0xff, QUIC_V1 & 0xff, clientScid.length]),
    clientScid,
    Buffer.from([16]),
    randomBytes(16),
    Buffer.from([0, 0x40 | (length >> 8), length & 0xff]),
    packetNumber,
  ]);
  const pnOffset = header.length - packetNumber.length;
  const cipher = createCipheriv('aes-128-gcm', key, iv); // packet number 0: the nonce is the IV
  cipher.setAAD(header);
  const packet = Buffer.concat([header, cipher.update(payload), cipher.final(), cipher.getAuthTag()]);
  // Header protection: a mask from a sample of the ciphertext hides the first byte's low bits and the packet number.
  const sample = packet.subarray(pnOffset + 4, pnOffset + 20);
  const mask = createCipheriv('aes-128-ecb', hp, null).update(sample);
  packet[0]! ^= mask[0]! & 0x0f;
  for (let i = 0; i < packetNumber.length; i++) packet[pnOffset + i]! ^= mask[1 + i]!;
  return packet;
}

/**
 * RFC 9000 §8.1 for one connection: until the peer's address is validated, the bytes we send stay
 * within 3x the bytes it sent. quiche 0.18 enforces this on its first flight but not on its probe
 * retransmissions (measured: 6.3x to a silent address over 30 s), so the endpoint enforces it too.
 */
export class AmplificationBudget {
  received = 0;
  sent = 0;

  /** True when a packet of up to `size` bytes fits in the budget. */
  allows(size: number): boolean {
    return this.sent + size <= this.received * AMPLIFICATION_FACTOR;
  }
}
