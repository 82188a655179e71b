/**
 * The wire of the TCP worker link (`osps-link/2`): length-prefixed binary
 * frames, each authenticated after the handshake with HMAC-SHA256 under a
 * key derived for that session, over a per-direction sequence number, so a
 * frame can be neither forged, replayed, reordered, dropped unnoticed, nor
 * moved to another session. docs/PROTOCOL.md ("The TCP worker link") is the
 * specification.
 *
 * Frame: `u32 length (LE) | u8 type | payload | 16-byte MAC` (the MAC only
 * once the session is keyed). `length` counts everything after itself.
 * @module
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { ProtocolError } from "../errors.ts";
import { MAX_LINK_MESSAGE } from "../net/protocol.ts";
import { abortable, deadline } from "../deadline.ts";

/** Link protocol version, sent in HELLO and AUTH. */
export const LINK_VERSION = "osps-link/2";

/** Frame types. */
export const Frame = {
  /** dispatcher → worker, first: version and the dispatcher's nonce. */
  HELLO: 1,
  /** worker → dispatcher: version, the worker's nonce, who it is, and its proof. */
  AUTH: 2,
  /** dispatcher → worker: the dispatcher's proof; the session is keyed from here on. */
  WELCOME: 3,
  /** either way, then close: why the link is refused. */
  REFUSED: 4,
  /** dispatcher → worker: a ticket (ticket, type, client, ttl). */
  ASSIGN: 5,
  /** dispatcher → worker: take that unused ticket back (its client left, or it expired). */
  REVOKE: 6,
  /** worker → dispatcher: a client presented the ticket (with the slot generation). */
  CLAIMED: 7,
  /** worker → dispatcher: finished, idle again (with its served count). */
  DONE: 8,
  /** worker → dispatcher: an unused ticket expired here; idle again. */
  EXPIRED: 9,
  /** either way: heartbeat, answered by PONG. */
  PING: 10,
  PONG: 11,
  /** dispatcher → worker: end-to-end probe, answered by ECHO from the worker's event loop. */
  PROBE: 12,
  /** either way: a message on the link's data channel (raw bytes). */
  MESSAGE: 13,
  /** worker → dispatcher: its work state changed outside a request (ready, draining). */
  STATE: 14,
  /** worker → dispatcher: the answer to a PROBE (as on the FIFO pair: PROBE/ECHO, never PING/PONG). */
  ECHO: 15,
} as const;

/** Name of a frame type, for logs. */
export function frameName(type: number): string {
  return Object.entries(Frame).find(([, v]) => v === type)?.[0] ?? `type ${type}`;
}

const MAC_BYTES = 16;
/** Longest frame accepted (a full data-channel message, its type and MAC, with room for JSON frames). */
export const MAX_FRAME = MAX_LINK_MESSAGE + 1024;
/** Bytes queued for sending before the peer is judged not to be reading (the link is dropped). */
const MAX_UNSENT = 4 * 1024 * 1024;

/** The link peer broke the link protocol, failed authentication, or went silent. */
export class LinkError extends ProtocolError {}

/** HMAC-SHA256 of the parts (strings as UTF-8). */
export function hmac(key: Uint8Array, ...parts: (string | Uint8Array)[]): Uint8Array {
  const h = createHmac("sha256", key);
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

/** Constant-time equality of two byte strings. */
export function sameMac(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** A frame read from the wire. */
export interface LinkFrame {
  readonly type: number;
  readonly payload: Uint8Array;
}

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

/** A JSON payload. */
export function jsonPayload(value: unknown): Uint8Array {
  return enc.encode(JSON.stringify(value));
}

/** Parses a JSON payload into an object, or throws {@link LinkError}. */
export function parseJson(frame: LinkFrame): Record<string, unknown> {
  try {
    const v = JSON.parse(dec.decode(frame.payload));
    if (v && typeof v === "object" && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch { /* below */ }
  throw new LinkError(`malformed ${frameName(frame.type)} frame`);
}

/**
 * One TCP link connection: reads and writes frames; once {@link LinkChannel.key}
 * is called, every frame is authenticated both ways.
 */
export class LinkChannel {
  readonly conn: Deno.Conn;
  #buf = new Uint8Array(8192);
  #start = 0;
  #end = 0;
  #sendKey: Uint8Array | undefined;
  #recvKey: Uint8Array | undefined;
  #sendSeq = 0n;
  #recvSeq = 0n;
  #tail: Promise<void> = Promise.resolve();
  #unsent = 0;
  #closed = false;

  constructor(conn: Deno.Conn) {
    this.conn = conn;
  }

  /** Peer address as `host:port`. */
  get peer(): string {
    const a = this.conn.remoteAddr as Deno.NetAddr;
    return `${a.hostname}:${a.port}`;
  }

  /** True once closed (by us, or after a read or write failed). */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Keys the session: from now on every frame carries a MAC under the key of
   * its direction (derived from `sessionKey` and the role), over its sequence.
   */
  key(sessionKey: Uint8Array, role: "dispatcher" | "worker"): void {
    const toWorker = hmac(sessionKey, "osps-link/2 dispatcher->worker");
    const toDispatcher = hmac(sessionKey, "osps-link/2 worker->dispatcher");
    this.#sendKey = role === "dispatcher" ? toWorker : toDispatcher;
    this.#recvKey = role === "dispatcher" ? toDispatcher : toWorker;
  }

  #mac(key: Uint8Array, seq: bigint, type: number, payload: Uint8Array): Uint8Array {
    const head = new Uint8Array(9);
    new DataView(head.buffer).setBigUint64(0, seq, true);
    head[8] = type;
    return hmac(key, head, payload).subarray(0, MAC_BYTES);
  }

  /**
   * Queues one frame; frames go out in order. Returns false when the link is
   * closed or the peer has stopped reading (more than 4 MiB unsent: the link
   * is then dropped, since a peer that does not read is not working).
   */
  send(type: number, payload: Uint8Array = new Uint8Array(0)): boolean {
    if (this.#closed) return false;
    const macLen = this.#sendKey ? MAC_BYTES : 0;
    const frame = new Uint8Array(5 + payload.length + macLen);
    const view = new DataView(frame.buffer);
    view.setUint32(0, 1 + payload.length + macLen, true);
    frame[4] = type;
    frame.set(payload, 5);
    if (this.#sendKey) {
      frame.set(this.#mac(this.#sendKey, this.#sendSeq++, type, payload), 5 + payload.length);
    }
    if (this.#unsent + frame.length > MAX_UNSENT) {
      this.close();
      return false;
    }
    this.#unsent += frame.length;
    this.#tail = this.#tail.then(async () => {
      try {
        for (let off = 0; off < frame.length && !this.#closed;) {
          off += await this.conn.write(frame.subarray(off));
        }
      } catch {
        this.close();
      } finally {
        this.#unsent -= frame.length;
      }
    });
    return true;
  }

  /** Resolves when everything queued so far is written (or the link closed). */
  flushed(): Promise<void> {
    return this.#tail;
  }

  /**
   * Reads the next frame; null at the end of the stream. Throws
   * {@link LinkError} for an over-long frame, a bad MAC, or when `timeoutMs`
   * passes first (the caller closes the link).
   */
  async read(timeoutMs?: number): Promise<LinkFrame | null> {
    using d = timeoutMs === undefined
      ? undefined
      : deadline(timeoutMs, () => new LinkError(`link silent for ${timeoutMs} ms`));
    for (;;) {
      const have = this.#end - this.#start;
      if (have >= 4) {
        const len = new DataView(this.#buf.buffer, this.#buf.byteOffset + this.#start).getUint32(0, true);
        if (len < 1 || len > MAX_FRAME) throw new LinkError(`link frame of ${len} bytes refused`);
        if (have >= 4 + len) {
          const body = this.#buf.slice(this.#start + 4, this.#start + 4 + len);
          this.#start += 4 + len;
          return this.#open(body);
        }
        if (this.#buf.length < 4 + len) this.#grow(4 + len);
      }
      if (this.#end === this.#buf.length) this.#compact();
      let n: number | null;
      try {
        n = await abortable(this.conn.read(this.#buf.subarray(this.#end)), d?.signal);
      } catch (err) {
        if (err instanceof LinkError) throw err;
        return null; // reset, closed: the end of this link
      }
      if (n === null) return null;
      this.#end += n;
    }
  }

  #open(body: Uint8Array): LinkFrame {
    const type = body[0]!;
    if (!this.#recvKey) return { type, payload: body.subarray(1) };
    if (body.length < 1 + MAC_BYTES) throw new LinkError("link frame too short for its MAC");
    const payload = body.subarray(1, body.length - MAC_BYTES);
    const mac = body.subarray(body.length - MAC_BYTES);
    if (!sameMac(mac, this.#mac(this.#recvKey, this.#recvSeq, type, payload))) {
      throw new LinkError("link frame failed authentication (forged, replayed or out of order)");
    }
    this.#recvSeq++;
    return { type, payload };
  }

  #compact(): void {
    this.#buf.copyWithin(0, this.#start, this.#end);
    this.#end -= this.#start;
    this.#start = 0;
    if (this.#end === this.#buf.length) this.#grow(this.#buf.length * 2);
  }

  #grow(size: number): void {
    const next = new Uint8Array(Math.max(size, this.#buf.length));
    next.set(this.#buf.subarray(this.#start, this.#end));
    this.#end -= this.#start;
    this.#start = 0;
    this.#buf = next;
  }

  /** Sends REFUSED with `reason` (best effort), then closes. */
  async refuse(reason: string): Promise<void> {
    this.send(Frame.REFUSED, jsonPayload({ reason }));
    await abortable(this.#tail, AbortSignal.timeout(1_000)).catch(() => {});
    this.close();
  }

  /** Closes the connection (idempotent). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch { /* already closed */ }
  }
}
