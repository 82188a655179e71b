/**
 * The WebSocket protocol (RFC 6455), server side, for IRC over WebSocket
 * (the IRCv3 WebSocket transport: one IRC line per message, subprotocol
 * `text.ircv3.net` or `binary.ircv3.net`).
 *
 * {@link WsLines} presents a WebSocket as the byte stream of CR LF lines an
 * IRC connection reads and writes (`read`, `write`, `close`, `remoteAddr`:
 * what `IrcConn` uses of a socket), so the chat serves it with the same
 * session code as a TCP client. Limits: a message at most
 * {@link MAX_MESSAGE_BYTES} (1009 past it), control frames as the RFC says
 * (at most 125 bytes, never fragmented), client frames masked, no reserved
 * bits, text valid UTF-8 (1007): any violation closes that connection only.
 * Pings are answered with pongs.
 * @module
 */

/** Largest message accepted: an IRC line with tags (8191 + 512) and room to spare. */
export const MAX_MESSAGE_BYTES = 16 * 1024;

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const encoder = new TextEncoder();
const strict = new TextDecoder("utf-8", { fatal: true });

/** The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key`. */
export async function acceptKey(key: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-1", encoder.encode(key + GUID));
  return btoa(String.fromCharCode(...new Uint8Array(digest)));
}

/** True when `key` is what RFC 6455 asks for: 16 bytes, base64. */
export function validKey(key: string | undefined): key is string {
  return !!key && /^[A-Za-z0-9+/]{22}==$/.test(key);
}

/** The IRCv3 subprotocols, in the order the server prefers them. */
export const IRC_SUBPROTOCOLS = ["binary.ircv3.net", "text.ircv3.net"] as const;
/** One of {@link IRC_SUBPROTOCOLS}. */
export type IrcSubprotocol = (typeof IRC_SUBPROTOCOLS)[number];

/** The subprotocol to answer from a `Sec-WebSocket-Protocol` offer; null for none offered (then text frames). */
export function chooseSubprotocol(offer: string | undefined): IrcSubprotocol | null {
  const offered = (offer ?? "").split(",").map((s) => s.trim().toLowerCase());
  return IRC_SUBPROTOCOLS.find((p) => offered.includes(p)) ?? null;
}

const OP = { CONT: 0x0, TEXT: 0x1, BINARY: 0x2, CLOSE: 0x8, PING: 0x9, PONG: 0xa } as const;

/** A WebSocket carrying IRC lines, seen as a byte stream of CR LF lines. */
export class WsLines {
  readonly #tcp: Deno.Conn;
  readonly #binary: boolean;
  #buf: Uint8Array;
  #start = 0;
  #end = 0;
  /** Lines received, as bytes with CR LF, waiting for `read`. */
  #inbox: Uint8Array[] = [];
  #inboxOff = 0;
  /** A fragmented message being assembled. */
  #parts: Uint8Array[] = [];
  #partsBytes = 0;
  #partsOp = 0;
  #closed = false;
  #closeSent = false;
  /** Partial line written by the IRC side (up to its CR LF). */
  #pendingOut = "";
  readonly #decoder = new TextDecoder();
  /** Why the connection was closed by us (for logs and tests). */
  closeReason = "";

  constructor(tcp: Deno.Conn, initial: Uint8Array, subprotocol: IrcSubprotocol | null) {
    this.#tcp = tcp;
    this.#binary = subprotocol === "binary.ircv3.net";
    this.#buf = new Uint8Array(Math.max(32 * 1024, initial.length * 2));
    this.#buf.set(initial);
    this.#end = initial.length;
  }

  /** The client's address (as a TCP connection has it). */
  get remoteAddr(): Deno.Addr {
    return this.#tcp.remoteAddr;
  }

  /** Reads bytes of received lines; null once the WebSocket closed. */
  async read(into: Uint8Array): Promise<number | null> {
    while (this.#inbox.length === 0) {
      if (this.#closed) return null;
      if (!(await this.#frame())) {
        this.#closed = true;
        return null;
      }
    }
    const head = this.#inbox[0]!;
    const n = Math.min(into.length, head.length - this.#inboxOff);
    into.set(head.subarray(this.#inboxOff, this.#inboxOff + n));
    this.#inboxOff += n;
    if (this.#inboxOff === head.length) {
      this.#inbox.shift();
      this.#inboxOff = 0;
    }
    return n;
  }

  /** Writes IRC output: each complete CR LF line becomes one message. */
  async write(data: Uint8Array): Promise<number> {
    if (this.#closeSent) throw new Deno.errors.BrokenPipe("websocket closed");
    const text = this.#pendingOut + this.#decoder.decode(data, { stream: true });
    const lines = text.split("\r\n");
    this.#pendingOut = lines.pop()!;
    const frames = lines.map((l) => frame(this.#binary ? OP.BINARY : OP.TEXT, encoder.encode(l)));
    await this.#send(concat(frames));
    return data.length;
  }

  /** Sends a close frame (once) and closes the socket. */
  close(code = 1000, reason = ""): void {
    if (!this.#closeSent) {
      this.#closeSent = true;
      const payload = new Uint8Array(2 + encoder.encode(reason).length);
      payload[0] = code >> 8;
      payload[1] = code & 0xff;
      payload.set(encoder.encode(reason), 2);
      void this.#send(frame(OP.CLOSE, payload)).finally(() => this.#end_());
    } else this.#end_();
  }

  #end_(): void {
    this.#closed = true;
    try {
      this.#tcp.close();
    } catch { /* already closed */ }
  }

  async #send(bytes: Uint8Array): Promise<void> {
    for (let off = 0; off < bytes.length;) off += await this.#tcp.write(bytes.subarray(off));
  }

  /** Reads one frame and acts on it; false when the connection is over. */
  async #frame(): Promise<boolean> {
    if (!(await this.#need(2))) return false;
    const b0 = this.#buf[this.#start]!, b1 = this.#buf[this.#start + 1]!;
    const fin = (b0 & 0x80) !== 0, op = b0 & 0x0f, masked = (b1 & 0x80) !== 0;
    let len = b1 & 0x7f, at = 2;
    if ((b0 & 0x70) !== 0) return this.#fail(1002, "reserved bits set");
    if (!masked) return this.#fail(1002, "client frames must be masked");
    if (len === 126) {
      if (!(await this.#need(4))) return false;
      len = (this.#buf[this.#start + 2]! << 8) | this.#buf[this.#start + 3]!;
      at = 4;
    } else if (len === 127) {
      if (!(await this.#need(10))) return false;
      const view = new DataView(this.#buf.buffer, this.#buf.byteOffset + this.#start + 2, 8);
      const big = view.getBigUint64(0);
      if (big > BigInt(MAX_MESSAGE_BYTES)) return this.#fail(1009, "message too big");
      len = Number(big);
      at = 10;
    }
    const control = op >= 0x8;
    if (control && (len > 125 || !fin)) return this.#fail(1002, "bad control frame");
    if (len > MAX_MESSAGE_BYTES || this.#partsBytes + len > MAX_MESSAGE_BYTES) {
      return this.#fail(1009, "message too big");
    }
    if (!(await this.#need(at + 4 + len))) return false;
    const mask = this.#buf.subarray(this.#start + at, this.#start + at + 4);
    const payload = this.#buf.slice(this.#start + at + 4, this.#start + at + 4 + len);
    for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[i & 3]!;
    this.#start += at + 4 + len;
    switch (op) {
      case OP.PING:
        await this.#send(frame(OP.PONG, payload)).catch(() => {});
        return true;
      case OP.PONG:
        return true;
      case OP.CLOSE: {
        const code = payload.length >= 2 ? (payload[0]! << 8) | payload[1]! : 1000;
        this.close(code === 1005 || code === 1006 || code === 1015 ? 1000 : code);
        return false;
      }
      case OP.TEXT:
      case OP.BINARY:
        if (this.#parts.length > 0) return this.#fail(1002, "a new message inside a fragmented one");
        this.#partsOp = op;
        break;
      case OP.CONT:
        if (this.#parts.length === 0) return this.#fail(1002, "continuation without a message");
        break;
      default:
        return this.#fail(1002, `unknown opcode ${op}`);
    }
    this.#parts.push(payload);
    this.#partsBytes += payload.length;
    if (!fin) return true;
    const message = concat(this.#parts);
    this.#parts = [];
    this.#partsBytes = 0;
    if (this.#partsOp === OP.TEXT) {
      try {
        strict.decode(message);
      } catch {
        return this.#fail(1007, "text message is not valid UTF-8");
      }
    }
    // One IRC line per message; a trailing CR LF is tolerated, the line ends here either way.
    let n = message.length;
    while (n > 0 && (message[n - 1] === 0x0a || message[n - 1] === 0x0d)) n--;
    const line = new Uint8Array(n + 2);
    line.set(message.subarray(0, n));
    line[n] = 0x0d;
    line[n + 1] = 0x0a;
    this.#inbox.push(line);
    return true;
  }

  #fail(code: number, why: string): false {
    this.closeReason = why;
    this.close(code, why);
    return false;
  }

  /** Waits until `n` bytes are buffered; false at the end of the stream. */
  async #need(n: number): Promise<boolean> {
    while (this.#end - this.#start < n) {
      if (this.#start > 0) {
        this.#buf.copyWithin(0, this.#start, this.#end);
        this.#end -= this.#start;
        this.#start = 0;
      }
      if (n > this.#buf.length) {
        const grown = new Uint8Array(n + 1024);
        grown.set(this.#buf.subarray(0, this.#end));
        this.#buf = grown;
      }
      let got: number | null;
      try {
        got = await this.#tcp.read(this.#buf.subarray(this.#end));
      } catch {
        got = null;
      }
      if (got === null) return false;
      this.#end += got;
    }
    return true;
  }
}

/** A server frame (unmasked, final). */
export function frame(op: number, payload: Uint8Array): Uint8Array {
  const n = payload.length;
  const head = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const out = new Uint8Array(head + n);
  out[0] = 0x80 | op;
  if (n < 126) out[1] = n;
  else if (n < 65536) {
    out[1] = 126;
    out[2] = n >> 8;
    out[3] = n & 0xff;
  } else {
    out[1] = 127;
    new DataView(out.buffer).setBigUint64(2, BigInt(n));
  }
  out.set(payload, head);
  return out;
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) out.set(p, off), off += p.length;
  return out;
}
