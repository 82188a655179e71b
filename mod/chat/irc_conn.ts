/**
 * An IRC client's socket: lines in (CR LF or LF, length-limited, bytes
 * decoded leniently: IRC has no mandated encoding, so invalid UTF-8 becomes
 * U+FFFD instead of ending the connection), lines out through a bounded send
 * queue. Writing never waits on the client: a line is queued and written in
 * the background, and a client whose queue stays past its cap (it does not
 * read) is reported through {@link IrcConn.onOverflow} and cut off, so a
 * slow reader never slows the sender or anyone else.
 * @module
 */
import { MAX_CLIENT_TAG_BYTES, MAX_LINE_BYTES, MAX_TAG_BYTES } from "./irc_message.ts";

/** What {@link IrcConn.readLine} returns for a line over the limit (it is dropped). */
export const TOO_LONG = Symbol("too long");

const encoder = new TextEncoder();
const READ_CHUNK = 16 * 1024;
/** Writes are batched up to this many bytes. */
const WRITE_BATCH = 64 * 1024;

/** Options of an {@link IrcConn}. */
export interface IrcConnOptions {
  /** Longest line without tags, CR LF included (at least 512). */
  readonly maxLineBytes?: number;
  /** Send queue cap in bytes. */
  readonly sendqBytes: number;
  /** Bytes already read from the socket by someone else (a hand-over). */
  readonly initial?: Uint8Array;
}

/** A line-based IRC connection with a bounded send queue. */
export class IrcConn {
  readonly conn: Deno.Conn;
  readonly #maxLine: number;
  readonly #sendqBytes: number;
  readonly #decoder = new TextDecoder("utf-8");
  #buf: Uint8Array;
  #start = 0;
  #end = 0;
  #discarding = false;
  #eof = false;
  #queue: Uint8Array[] = [];
  #queued = 0;
  #writing = false;
  #closed = false;
  /** The send queue went over its cap: the session says why and closes. */
  onOverflow: () => void = () => {};
  /**
   * While set, {@link send} collects lines here instead of queueing them: the
   * response of a labeled command (IRCv3 labeled-response, `labeled.ts`).
   * Other users' events go around it ({@link sendEvent}).
   */
  capture: string[] | null = null;

  constructor(conn: Deno.Conn, options: IrcConnOptions) {
    this.conn = conn;
    this.#maxLine = Math.max(MAX_LINE_BYTES, options.maxLineBytes ?? MAX_LINE_BYTES);
    this.#sendqBytes = options.sendqBytes;
    this.#buf = new Uint8Array(this.#maxLine + MAX_TAG_BYTES + READ_CHUNK);
    if (options.initial) {
      this.#buf.set(options.initial.subarray(0, this.#buf.length));
      this.#end = Math.min(options.initial.length, this.#buf.length);
    }
  }

  /** Peer address (host only). */
  get remoteHost(): string {
    return (this.conn.remoteAddr as Deno.NetAddr).hostname;
  }

  /** Bytes queued and not yet written. */
  get queued(): number {
    return this.#queued;
  }

  /**
   * Reads one line (without CR LF). Null at the end of the stream;
   * {@link TOO_LONG} for a line over the limit (dropped whole: the next call
   * returns the line after it).
   */
  async readLine(): Promise<string | null | typeof TOO_LONG> {
    for (;;) {
      const nl = this.#buf.subarray(this.#start, this.#end).indexOf(0x0a);
      if (nl >= 0) {
        const lf = this.#start + nl;
        const raw = this.#buf.subarray(
          this.#start,
          lf > this.#start && this.#buf[lf - 1] === 0x0d ? lf - 1 : lf,
        );
        this.#start = lf + 1;
        if (this.#discarding) {
          this.#discarding = false;
          return TOO_LONG;
        }
        return this.#tooLong(raw) ? TOO_LONG : this.#decoder.decode(raw);
      }
      if (this.#eof) {
        if (this.#start === this.#end || this.#discarding) return null;
        const raw = this.#buf.subarray(this.#start, this.#end);
        this.#start = this.#end;
        return this.#tooLong(raw) ? TOO_LONG : this.#decoder.decode(raw);
      }
      if (this.#start > 0) {
        this.#buf.copyWithin(0, this.#start, this.#end);
        this.#end -= this.#start;
        this.#start = 0;
      }
      if (this.#end === this.#buf.length) {
        this.#discarding = true; // longer than any line can be: drop up to the next LF
        this.#end = 0;
      }
      let n: number | null;
      try {
        n = await this.conn.read(this.#buf.subarray(this.#end));
      } catch {
        n = null; // reset, or closed under us: the client is gone
      }
      if (n === null) this.#eof = true;
      else this.#end += n;
    }
  }

  /** Over the limit: the tag section (a client's: 4096 bytes) and the rest are measured apart (IRCv3 message-tags). */
  #tooLong(raw: Uint8Array): boolean {
    let body = raw;
    if (raw[0] === 0x40 /* @ */) {
      const sp = raw.indexOf(0x20);
      if (sp >= MAX_CLIENT_TAG_BYTES || (sp < 0 && raw.length > MAX_CLIENT_TAG_BYTES)) return true;
      body = raw.subarray(sp + 1);
    }
    return body.length + 2 > this.#maxLine;
  }

  /**
   * Queues a line (CR LF appended). False when the connection is closed or
   * the queue overflowed. The cap is judged when the socket takes only part
   * of a write (it is full: what waits is what the client did not read); a
   * burst handed over in one turn — a group commit's messages — may pass it
   * before the socket had a chance to take any, so at the time of queueing
   * only twice the cap is too much.
   */
  send(line: string): boolean {
    if (this.capture && !this.#closed) {
      this.capture.push(line);
      return true;
    }
    return this.sendEvent(line);
  }

  /**
   * Queues a line that is no command's response (another user's event), even
   * while {@link capture} is set. Bytes (CR LF included) may be shared with
   * other connections: they are never written to.
   */
  sendEvent(line: string | Uint8Array): boolean {
    if (this.#closed) return false;
    const bytes = typeof line === "string" ? encoder.encode(line + "\r\n") : line;
    this.#queued += bytes.length;
    if (this.#queued > 2 * this.#sendqBytes) {
      this.#overflow();
      return false;
    }
    this.#queue.push(bytes);
    if (!this.#writing) void this.#writeLoop();
    return true;
  }

  #overflow(): void {
    this.#queue = [];
    this.#queued = 0;
    this.onOverflow();
  }

  async #writeLoop(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#queue.length > 0 && !this.#closed) {
        let batch = this.#queue.shift()!;
        if (this.#queue.length > 0 && batch.length < WRITE_BATCH) {
          const parts = [batch];
          let size = batch.length;
          while (this.#queue.length > 0 && size + this.#queue[0]!.length <= WRITE_BATCH) {
            size += this.#queue[0]!.length;
            parts.push(this.#queue.shift()!);
          }
          batch = new Uint8Array(size);
          let off = 0;
          for (const p of parts) batch.set(p, off), off += p.length;
        }
        for (let off = 0; off < batch.length;) {
          const n = await this.conn.write(batch.subarray(off));
          off += n;
          this.#queued -= n;
          // The socket took only part: it is full, and what waits is judged against the cap.
          if (off < batch.length && this.#queued > this.#sendqBytes) return this.#overflow();
        }
      }
    } catch {
      this.close(); // the client is gone; the read side sees it too
    } finally {
      this.#writing = false;
    }
  }

  /** Resolves once everything queued is written (or the connection closed), at most `timeoutMs`. */
  async flush(timeoutMs: number): Promise<void> {
    const until = Date.now() + timeoutMs;
    while ((this.#writing || this.#queue.length > 0) && !this.#closed && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** Closes the socket (idempotent). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue = [];
    try {
      this.conn.close();
    } catch { /* already closed */ }
  }

  /** True once closed. */
  get closed(): boolean {
    return this.#closed;
  }
}
