/**
 * A TCP connection read and written as protocol lines: the framing of
 * {@link LineBuffer} (line length, strict UTF-8 without NUL, linear in the
 * bytes) with a deadline per whole line (slowloris cannot stretch it by
 * dripping bytes), a deadline per written line (a peer that does not read its
 * answers loses its connection, and holds nothing else), and refusals that
 * deliver their status line before closing.
 * @module
 */
import { ProtocolError } from "../errors.ts";
import { abortable, deadline, expireAfter } from "../deadline.ts";
import { Limits, Status } from "./protocol.ts";
import { type HeaderScan, LineBuffer } from "./line_buffer.ts";
import { MAX_LINGERING } from "../sys/fds.ts";

export type { HeaderScan } from "./line_buffer.ts";

/** Options for {@link LineConn}. */
export interface LineConnOptions {
  /** Longest accepted line in bytes, CR and LF excluded. */
  maxLineBytes?: number;
  /**
   * Time one line may take to be taken by the peer's TCP (0 or absent: no
   * limit). Past it the connection is closed: a peer that does not read its
   * answers costs its own connection only (see {@link LineConn.writeExpired}).
   */
  writeTimeoutMs?: number;
  /**
   * Looks at the first bytes of the stream once its first line is complete,
   * and may throw a {@link ProtocolError} to refuse the connection (a PROXY
   * protocol header from a peer not trusted to send one).
   */
  checkFirstBytes?: (bytes: Uint8Array) => void;
}

/** Options of one {@link LineConn.readLine}. */
export interface ReadOptions {
  /** The whole line must arrive within this many ms, else 408. */
  timeoutMs?: number;
  /**
   * Stop waiting when this aborts (rejects with its reason). The read itself
   * goes on: the line it brings is returned by the next call.
   */
  signal?: AbortSignal;
}

const encoder = new TextEncoder();
/** Longest line encoded in JavaScript when it is plain ASCII (one op call saved per line written). */
const ASCII_FAST_CHARS = 256;

/** `line` and a LF as UTF-8: short ASCII lines (the protocol's own) without the encoder's op call. */
function encodeLine(line: string): Uint8Array {
  const n = line.length;
  if (n <= ASCII_FAST_CHARS) {
    const out = new Uint8Array(n + 1);
    let i = 0;
    for (; i < n; i++) {
      const c = line.charCodeAt(i);
      if (c >= 0x80) break;
      out[i] = c;
    }
    if (i === n) {
      out[n] = 0x0a;
      return out;
    }
  }
  return encoder.encode(line + "\n");
}
let lingering = 0;

/** Refused connections still open in this process while their status line is delivered. */
export function lingeringCount(): number {
  return lingering;
}

/** A TCP connection read and written as protocol lines. */
export class LineConn {
  readonly conn: Deno.Conn;
  readonly #writeTimeoutMs: number;
  readonly #lines: LineBuffer;
  #eof = false;
  /** The line being read, shared by whoever asks next (see {@link ReadOptions.signal}). */
  #pending: Promise<string | null> | undefined;
  /** The socket read in flight, if any: the descriptor is freed only once it settles after a close. */
  #inflight: Promise<unknown> | undefined;
  /** Handed over to a lingering close, which accounts for the descriptor itself. */
  #lingering = false;
  /** No line goes in or out any more (closed, or a last status line being delivered). */
  #closed = false;
  /** The socket itself is closed. */
  #socketClosed = false;
  /** A last status line being delivered (see {@link LineConn.refuse}). */
  #refusal: Promise<void> | undefined;
  /** Wakes a {@link LineConn.readLine} waiting for a line, with null (the connection was closed). */
  #wake: (() => void) | undefined;
  #writeExpired = false;

  constructor(conn: Deno.Conn, options: LineConnOptions = {}) {
    this.conn = conn;
    this.#lines = new LineBuffer(options.maxLineBytes ?? Limits.maxLineBytes, options.checkFirstBytes);
    this.#writeTimeoutMs = options.writeTimeoutMs ?? 0;
  }

  /** Connects to `host:port` (Nagle off: every line is a message). */
  static async connect(host: string, port: number, options?: LineConnOptions): Promise<LineConn> {
    const conn = await Deno.connect({ hostname: host, port, transport: "tcp" });
    conn.setNoDelay(true);
    return new LineConn(conn, options);
  }

  /** Remote address as `host:port`. */
  get peer(): string {
    const a = this.conn.remoteAddr as Deno.NetAddr;
    return `${a.hostname}:${a.port}`;
  }

  /** True once {@link LineConn.close} or {@link LineConn.refuse} ran: no line goes in or out any more. */
  get closed(): boolean {
    return this.#closed;
  }

  /** True when a line was not taken by the peer within the write timeout (the connection was closed for it). */
  get writeExpired(): boolean {
    return this.#writeExpired;
  }

  /**
   * Reads one line (LF removed, a CR before it removed). Returns null at EOF,
   * and once the connection is closed from this side (a close or a refusal
   * wakes a waiting read at once). Throws {@link ProtocolError} 413 for an
   * over-long line, 400 for invalid UTF-8 or a NUL byte, 408 when `timeoutMs`
   * passes before the line is complete (the caller then closes the
   * connection). A timeout or an abort only stops the waiting: the line it
   * was waiting for is returned by the next call.
   */
  readLine(options: ReadOptions | number = {}): Promise<string | null> {
    const { timeoutMs, signal } = typeof options === "number"
      ? { timeoutMs: options, signal: undefined }
      : options;
    if (this.#closed) return Promise.resolve(null);
    if (signal?.aborted) return Promise.reject(signal.reason);
    this.#pending ??= this.#nextLine();
    const pending = this.#pending;
    // One promise, settled once, by whichever comes first: the line, the timeout (on the shared coarse timer:
    // no timer or AbortController per read), the signal, or a close from this side.
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (consumed: boolean, finish: () => void) => {
        if (settled) return;
        settled = true;
        expiry?.cancel();
        signal?.removeEventListener("abort", onAbort);
        if (this.#wake === wake) this.#wake = undefined;
        if (consumed) this.#pending = undefined;
        finish();
      };
      const expiry = timeoutMs === undefined ? undefined : expireAfter(timeoutMs, () =>
        settle(
          false,
          () => reject(new ProtocolError(`no complete line within ${timeoutMs} ms`, Status.TIMEOUT)),
        ));
      const onAbort = () => settle(false, () => reject(signal!.reason));
      signal?.addEventListener("abort", onAbort, { once: true });
      const wake = () => settle(false, () => resolve(null));
      this.#wake = wake;
      pending.then(
        (line) => settle(true, () => resolve(this.#closed ? null : line)),
        (err) => settle(true, () => this.#closed ? resolve(null) : reject(err)),
      );
    });
  }

  /**
   * Reads a header that precedes the lines (the PROXY protocol's), within
   * `timeoutMs`: its bytes are consumed, what follows stays for
   * {@link LineConn.readLine}. Throws {@link ProtocolError}: 408 when it is not
   * complete in time, 400 for bytes that cannot be one, for one longer than
   * `scan.maxBytes`, or for a stream that ends inside it.
   */
  async readHeader<T>(scan: HeaderScan<T>, timeoutMs: number): Promise<T> {
    if (this.#pending) throw new Error("readHeader must come before any line");
    const { promise: late, reject } = Promise.withResolvers<never>();
    late.catch(() => {}); // raced below; nobody else awaits it
    const expiry = expireAfter(
      timeoutMs,
      () => reject(new ProtocolError(`no complete ${scan.what} within ${timeoutMs} ms`, Status.TIMEOUT)),
    );
    try {
      for (;;) {
        const found = this.#lines.header(scan);
        if (found !== null) return found;
        // On a timeout the read stays in flight: a refusal's linger waits for it before reading on.
        const n = await Promise.race([this.#read(this.#lines.space()), late]);
        if (n === null) {
          throw new ProtocolError(`the stream ended inside the ${scan.what}`, Status.BAD_REQUEST);
        }
        this.#lines.filled(n);
      }
    } finally {
      expiry.cancel();
    }
  }

  /**
   * Waits until a line, the end of the stream, or a framing error is there,
   * without consuming it (the next {@link LineConn.readLine} returns it).
   * Rejects with the signal's reason if `signal` aborts first.
   */
  async peek(signal?: AbortSignal): Promise<"line" | "eof" | "error"> {
    this.#pending ??= this.#nextLine();
    const settled = this.#pending.then(
      (line) => (line === null ? "eof" as const : "line" as const),
      () => "error" as const,
    );
    return await abortable(settled, signal);
  }

  async #nextLine(): Promise<string | null> {
    for (;;) {
      if (this.#closed) return null; // closed from this side: what the peer sent since is not read
      const line = this.#lines.next(this.#eof);
      if (line !== undefined) return line;
      const n = await this.#read(this.#lines.space());
      if (n === null) this.#eof = true;
      else this.#lines.filled(n);
    }
  }

  async #read(into: Uint8Array): Promise<number | null> {
    try {
      const read = this.conn.read(into);
      this.#inflight = read;
      return await read;
    } catch (err) {
      // A reset or a close from our side: the peer is gone, which is an end of stream.
      if (
        err instanceof Deno.errors.ConnectionReset || err instanceof Deno.errors.BadResource ||
        err instanceof Deno.errors.NotConnected || err instanceof Deno.errors.Interrupted
      ) return null;
      throw err;
    }
  }

  /**
   * Hands over the bytes read from the socket but not yet returned as lines
   * (a client that pipelined what follows its first line), and forgets them:
   * whoever takes over the socket reads them first. Call it only between
   * lines (no read in flight).
   */
  takeBuffered(): Uint8Array {
    return this.#lines.takeBuffered();
  }

  /**
   * Writes one line (LF appended). Resolves false when the peer is gone, the
   * connection was closed, or the line was not taken within the write
   * timeout (the connection is then closed: {@link LineConn.writeExpired}).
   */
  writeLine(line: string): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    return this.#send(encodeLine(line));
  }

  async #send(data: Uint8Array): Promise<boolean> {
    const expiry = this.#writeTimeoutMs > 0
      ? expireAfter(this.#writeTimeoutMs, () => {
        this.#writeExpired = true;
        this.#closed = true;
        this.#wake?.();
        this.#closeSocket(); // ends the write in flight
      })
      : undefined;
    try {
      let off = 0;
      while (off < data.length) off += await this.conn.write(data.subarray(off));
      return true;
    } catch {
      return false;
    } finally {
      expiry?.cancel();
    }
  }

  /**
   * Sends a last status line and closes so that the peer reads it: closing a
   * socket with unread input makes the kernel send a reset, which can destroy
   * the reply in flight. So the write side is shut first, and the input is
   * read and dropped in the background until the peer closes too, for at most
   * `lingerMs` (bounded in number: past {@link MAX_LINGERING} at once, close
   * once the line is written). From the call on, no other line goes in or
   * out, and a {@link LineConn.readLine} waiting is woken with null, so the
   * line may come from outside the connection's own session (an eviction).
   * Resolves once the line is written; the connection then counts against no
   * limit of the caller's.
   */
  refuse(line: string, lingerMs = 1_000): Promise<void> {
    if (this.#closed) return this.#refusal ?? Promise.resolve();
    this.#closed = true;
    this.#wake?.();
    const linger = lingering < MAX_LINGERING;
    if (linger) { // counted from now: the descriptor is this refusal's until the socket is closed
      lingering++;
      this.#lingering = true;
    }
    this.#refusal = (async () => {
      const sent = await this.#send(encodeLine(line));
      let shut = sent && linger;
      if (shut) {
        try {
          await this.conn.closeWrite();
        } catch {
          shut = false; // the peer went away first: nothing left to deliver
        }
      }
      if (!shut) {
        this.#closeSocket();
        if (linger) {
          await this.#readsSettled();
          lingering--;
        }
        return;
      }
      void this.#linger(lingerMs).finally(async () => {
        this.#closeSocket();
        await this.#readsSettled();
        lingering--;
      });
    })();
    return this.#refusal;
  }

  async #linger(ms: number): Promise<void> {
    using d = deadline(ms, () => "linger over");
    // A socket read may still be in flight (a line being read): one read at a time on a socket.
    if (this.#inflight) {
      const n = await abortable(this.#readsSettled().then(() => 0), d.signal).catch(() => null);
      if (n === null) return;
    }
    const sink = new Uint8Array(4096);
    while (!d.signal.aborted && !this.#socketClosed) {
      const n = await abortable(this.#read(sink), d.signal).catch(() => null);
      if (n === null) return;
    }
  }

  /**
   * Resolves once no read is in flight on the socket. After {@link LineConn.close},
   * that is when the descriptor is really released (a pending read holds it
   * until it is cancelled), so a server counting descriptors waits for it.
   */
  async settled(): Promise<void> {
    if (this.#lingering) return; // the lingering close waits for it, and counts it meanwhile
    await this.#refusal; // a refusal that does not linger closes once its line is written
    await this.#readsSettled();
  }

  async #readsSettled(): Promise<void> {
    for (let p = this.#inflight; p; p = this.#inflight === p ? undefined : this.#inflight) {
      await p.catch(() => {});
    }
  }

  /**
   * Closes the connection (idempotent); a {@link LineConn.readLine} waiting is
   * woken with null. A refusal under way closes it itself, once its line is
   * delivered.
   */
  close(): void {
    if (this.#closed) {
      if (!this.#refusal) this.#closeSocket();
      return;
    }
    this.#closed = true;
    this.#wake?.();
    this.#closeSocket();
  }

  #closeSocket(): void {
    if (this.#socketClosed) return;
    this.#socketClosed = true;
    try {
      this.conn.close();
    } catch { /* already closed */ }
  }

  /** `using` support. */
  [Symbol.dispose](): void {
    this.close();
  }
}
