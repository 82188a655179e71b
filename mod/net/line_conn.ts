/**
 * Line framing over a TCP connection, with the protocol's limits: maximum line
 * length (the buffer never holds more than one line of that length), strict
 * UTF-8 without NUL, and a deadline per whole line (slowloris cannot stretch
 * it by dripping bytes). Each byte is scanned once, so a long line costs
 * linear time however it is split.
 * @module
 */
import { ProtocolError } from "../errors.ts";
import { abortable, deadline, expireAfter } from "../deadline.ts";
import { Limits, Status } from "./protocol.ts";
import { MAX_LINGERING } from "../sys/fds.ts";

/** Options for {@link LineConn}. */
export interface LineConnOptions {
  /** Longest accepted line in bytes, CR and LF excluded. */
  maxLineBytes?: number;
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
const INITIAL_BUFFER = 4096;
const READ_CHUNK = 16 * 1024;
let lingering = 0;

/** Refused connections still open in this process while their status line is delivered. */
export function lingeringCount(): number {
  return lingering;
}

/** A TCP connection read and written as protocol lines. */
export class LineConn {
  readonly conn: Deno.Conn;
  readonly #max: number;
  readonly #decoder = new TextDecoder("utf-8", { fatal: true });
  #buf = new Uint8Array(INITIAL_BUFFER);
  /** Unconsumed bytes are #buf[#start, #end); bytes before #scan hold no LF. */
  #start = 0;
  #end = 0;
  #scan = 0;
  #eof = false;
  /** The line being read, shared by whoever asks next (see {@link ReadOptions.signal}). */
  #pending: Promise<string | null> | undefined;
  /** The socket read in flight, if any: the descriptor is freed only once it settles after a close. */
  #inflight: Promise<unknown> | undefined;
  /** Handed over to a lingering close, which accounts for the descriptor itself. */
  #lingering = false;
  #closed = false;

  constructor(conn: Deno.Conn, options: LineConnOptions = {}) {
    this.conn = conn;
    this.#max = options.maxLineBytes ?? Limits.maxLineBytes;
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

  /** True once {@link LineConn.close} ran. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Reads one line (LF removed, a CR before it removed). Returns null at EOF.
   * Throws {@link ProtocolError} 413 for an over-long line, 400 for invalid
   * UTF-8 or a NUL byte, 408 when `timeoutMs` passes before the line is
   * complete (the caller then closes the connection).
   */
  async readLine(options: ReadOptions | number = {}): Promise<string | null> {
    const { timeoutMs, signal } = typeof options === "number"
      ? { timeoutMs: options, signal: undefined }
      : options;
    this.#pending ??= this.#nextLine();
    const pending = this.#pending;
    if (timeoutMs !== undefined && signal === undefined) return this.#readWithin(pending, timeoutMs);
    using d = timeoutMs === undefined
      ? undefined
      : deadline(timeoutMs, () =>
        new ProtocolError(`no complete line within ${timeoutMs} ms`, Status.TIMEOUT));
    const stop = d && signal ? AbortSignal.any([d.signal, signal]) : d?.signal ?? signal;
    // The line is consumed when it arrives or fails; if we only stopped waiting, the next call gets it.
    let consumed = false;
    try {
      const line = await abortable(pending, stop);
      consumed = true;
      return line;
    } catch (err) {
      consumed = !(stop?.aborted && err === stop.reason);
      throw err;
    } finally {
      if (consumed) this.#pending = undefined;
    }
  }

  /**
   * The common case of {@link LineConn.readLine}, a timeout and no signal,
   * on a coarse deadline (no timer, no AbortController per read). On a
   * timeout the line stays pending: the next call gets it.
   */
  #readWithin(pending: Promise<string | null>, timeoutMs: number): Promise<string | null> {
    return new Promise((resolve, reject) => {
      let timedOut = false;
      const expiry = expireAfter(timeoutMs, () => {
        timedOut = true;
        reject(new ProtocolError(`no complete line within ${timeoutMs} ms`, Status.TIMEOUT));
      });
      pending.then((line) => {
        if (timedOut) return;
        expiry.cancel();
        this.#pending = undefined;
        resolve(line);
      }, (err) => {
        if (timedOut) return;
        expiry.cancel();
        this.#pending = undefined;
        reject(err);
      });
    });
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
      const nl = this.#buf.subarray(this.#scan, this.#end).indexOf(0x0a);
      if (nl >= 0) {
        const lf = this.#scan + nl;
        const cut = lf > this.#start && this.#buf[lf - 1] === 0x0d ? lf - 1 : lf;
        const raw = this.#buf.subarray(this.#start, cut);
        this.#start = this.#scan = lf + 1;
        if (raw.length > this.#max) throw this.#tooLong();
        return this.#decode(raw);
      }
      this.#scan = this.#end;
      // A CR may still precede the LF: one byte more than the limit is not yet too long.
      if (this.#end - this.#start > this.#max + 1) throw this.#tooLong();
      if (this.#eof) {
        if (this.#end === this.#start) return null;
        const rest = this.#buf.subarray(this.#start, this.#end);
        this.#start = this.#scan = this.#end;
        if (rest.length > this.#max) throw this.#tooLong();
        return this.#decode(rest); // last line without LF
      }
      this.#makeRoom();
      const n = await this.#read(
        this.#buf.subarray(this.#end, Math.min(this.#buf.length, this.#end + READ_CHUNK)),
      );
      if (n === null) this.#eof = true;
      else this.#end += n;
    }
  }

  /** Moves unconsumed bytes to the front, or grows the buffer, up to one longest line plus CR and LF. */
  #makeRoom(): void {
    if (this.#end < this.#buf.length) return;
    if (this.#start > 0) {
      this.#buf.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#scan -= this.#start;
      this.#start = 0;
      if (this.#end < this.#buf.length) return;
    }
    const grown = new Uint8Array(Math.min(this.#buf.length * 2, this.#max + 2));
    grown.set(this.#buf.subarray(0, this.#end));
    this.#buf = grown;
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

  #tooLong(): ProtocolError {
    return new ProtocolError(`line longer than ${this.#max} bytes`, Status.TOO_LONG);
  }

  #decode(raw: Uint8Array): string {
    if (raw.includes(0)) throw new ProtocolError("NUL byte in line", Status.BAD_REQUEST);
    try {
      return this.#decoder.decode(raw);
    } catch (err) {
      throw new ProtocolError("line is not valid UTF-8", Status.BAD_REQUEST, { cause: err });
    }
  }

  /**
   * Hands over the bytes read from the socket but not yet returned as lines
   * (a client that pipelined what follows its first line), and forgets them:
   * whoever takes over the socket reads them first. Call it only between
   * lines (no read in flight).
   */
  takeBuffered(): Uint8Array {
    const rest = this.#buf.slice(this.#start, this.#end);
    this.#start = this.#scan = this.#end = 0;
    return rest;
  }

  /** Writes one line (LF appended). Resolves false when the peer is gone. */
  async writeLine(line: string): Promise<boolean> {
    if (this.#closed) return false;
    const data = encoder.encode(line + "\n");
    try {
      let off = 0;
      while (off < data.length) off += await this.conn.write(data.subarray(off));
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Sends a last status line and closes so that the peer reads it: closing a
   * socket with unread input makes the kernel send a reset, which can destroy
   * the reply in flight. So the write side is shut first, and the input is
   * read and dropped in the background until the peer closes too, for at most
   * `lingerMs` (bounded in number: past {@link MAX_LINGERING} at once, close
   * at once). Resolves once the line is written; the connection then counts
   * against no limit of the caller's.
   */
  async refuse(line: string, lingerMs = 1_000): Promise<void> {
    const sent = await this.writeLine(line);
    if (!sent || this.#closed || lingering >= MAX_LINGERING) return this.close();
    try {
      await this.conn.closeWrite();
    } catch {
      return this.close(); // the peer went away first: nothing left to deliver
    }
    lingering++;
    this.#lingering = true;
    this.#closed = true; // no more writes; the read side is drained below
    void this.#linger(lingerMs).finally(async () => {
      try {
        this.conn.close();
      } catch { /* already closed */ }
      await this.#readsSettled();
      lingering--;
    });
  }

  async #linger(ms: number): Promise<void> {
    using d = deadline(ms, () => "linger over");
    // A line read may still be in flight (after a timeout, say): one read at a time on a socket.
    if (this.#pending) {
      const line = await abortable(this.#pending, d.signal).catch(() => null);
      if (line === null) return;
    }
    const sink = new Uint8Array(4096);
    while (!d.signal.aborted) {
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
    await this.#readsSettled();
  }

  async #readsSettled(): Promise<void> {
    for (let p = this.#inflight; p; p = this.#inflight === p ? undefined : this.#inflight) {
      await p.catch(() => {});
    }
  }

  /** Closes the connection (idempotent). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch { /* already closed */ }
  }

  /** `using` support. */
  [Symbol.dispose](): void {
    this.close();
  }
}
