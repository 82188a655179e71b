/**
 * An IRC client's socket: lines in, lines out through a bounded send queue.
 *
 * In: a line ends at LF or at CR (a bare CR inside a line ends it too, so
 * no client can smuggle a second line — a spoofed server line — into a
 * message others receive). Lines are length-limited; bytes are decoded
 * leniently (IRC has no mandated encoding, so invalid UTF-8 becomes U+FFFD
 * instead of ending the connection). The read buffer starts small (an idle
 * connection holds {@link READ_MIN} bytes, not the longest line) and grows
 * only while a client sends more than fits.
 *
 * Out: writing never waits on the client. Lines (or bytes shared by every
 * recipient of one message, see `outgoing.ts`) are queued, and what was
 * queued in one turn of the event loop goes out in one write — written at
 * once where the socket writes synchronously (`irc_socket.ts`), else through
 * the runtime's asynchronous write. A client
 * whose queue stays past its cap (it does not read) is reported through
 * {@link IrcConn.onOverflow} and cut off, so a slow reader never slows the
 * sender or anyone else.
 * @module
 */
import { flushSoon } from "./flush_schedule.ts";
import { MAX_CLIENT_TAG_BYTES, MAX_LINE_BYTES, MAX_TAG_BYTES } from "./irc_message.ts";
import { type IrcSocket, type WritesNow, writesNow } from "./irc_socket.ts";

/** What {@link IrcConn.readLine} returns for a line over the limit (it is dropped). */
export const TOO_LONG = Symbol("too long");

const encoder = new TextEncoder();
/** One decoder for every connection: lines are decoded whole, never as a stream. */
const decoder = new TextDecoder("utf-8");
/** Read buffer of a connection at rest. */
export const READ_MIN = 1024;
/** Small pieces are joined into one write up to this many bytes. */
const WRITE_BATCH = 16 * 1024;
/** A queued piece this big is written as it is, never copied (see {@link IrcConn}'s `#nextBatch`). */
const SHARED_MIN = 2 * 1024;

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
  readonly conn: IrcSocket;
  /** The socket's synchronous writes, when it has them. */
  readonly #now: WritesNow | null;
  readonly #maxLine: number;
  readonly #sendqBytes: number;
  #buf: Uint8Array;
  #start = 0;
  #end = 0;
  #discarding = false;
  #eof = false;
  #queue: Uint8Array[] | null = null;
  /** Pieces of {@link #queue} before this one are written (a slow reader's queue is long: no `shift`). */
  #head = 0;
  #queued = 0;
  /** What the socket did not take of a synchronous write: goes out first, when it can take more. */
  #rest: Uint8Array | null = null;
  #writing = false;
  #closed = false;
  #drainWaiters: Array<{ low: number; resolve: () => void }> | null = null;
  /** The send queue went over its cap: the session says why and closes. */
  onOverflow: () => void = () => {};
  /**
   * While set, {@link send} collects lines here instead of queueing them: the
   * response of a labeled command (IRCv3 labeled-response, `labeled.ts`).
   * Other users' events go around it ({@link sendBytes}).
   */
  capture: string[] | null = null;

  constructor(conn: IrcSocket, options: IrcConnOptions) {
    this.conn = conn;
    this.#now = writesNow(conn) ? conn : null;
    this.#maxLine = Math.max(MAX_LINE_BYTES, options.maxLineBytes ?? MAX_LINE_BYTES);
    this.#sendqBytes = options.sendqBytes;
    const initial = options.initial?.subarray(0, this.#capacity) ?? new Uint8Array(0);
    this.#buf = new Uint8Array(Math.max(READ_MIN, initial.length));
    this.#buf.set(initial);
    this.#end = initial.length;
  }

  /** The largest the read buffer grows: the longest line with tags, and its CR LF. */
  get #capacity(): number {
    return this.#maxLine + MAX_TAG_BYTES + 2;
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
   * Reads one line (without its end). Null at the end of the stream;
   * {@link TOO_LONG} for a line over the limit (dropped whole: the next call
   * returns the line after it). Empty lines are skipped.
   */
  async readLine(): Promise<string | null | typeof TOO_LONG> {
    for (;;) {
      const line = this.#takeLine();
      if (line !== undefined) return line;
      if (this.#eof) {
        if (this.#start === this.#end || this.#discarding) return null;
        const raw = this.#buf.subarray(this.#start, this.#end);
        this.#start = this.#end;
        return this.#tooLong(raw) ? TOO_LONG : decoder.decode(raw);
      }
      this.#makeRoom();
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

  /** The next complete line in the buffer, or undefined. */
  #takeLine(): string | null | typeof TOO_LONG | undefined {
    for (;;) {
      const view = this.#buf.subarray(this.#start, this.#end);
      const lf = view.indexOf(0x0a), cr = view.indexOf(0x0d);
      const at = lf < 0 ? cr : cr < 0 ? lf : Math.min(lf, cr);
      if (at < 0) return undefined;
      const raw = view.subarray(0, at);
      this.#start += at + 1;
      if (this.#discarding) {
        this.#discarding = false;
        return TOO_LONG;
      }
      if (raw.length === 0) continue; // the LF of a CR LF, or an empty line
      return this.#tooLong(raw) ? TOO_LONG : decoder.decode(raw);
    }
  }

  /** Before a read: moves what is left to the front, shrinks an empty big buffer, grows a full one. */
  #makeRoom(): void {
    if (this.#start === this.#end) {
      this.#start = this.#end = 0;
      if (this.#buf.length > READ_MIN) this.#buf = new Uint8Array(READ_MIN);
      return;
    }
    if (this.#start > 0) {
      this.#buf.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    if (this.#end < this.#buf.length) return;
    if (this.#buf.length < this.#capacity) {
      const bigger = new Uint8Array(Math.min(this.#capacity, this.#buf.length * 4));
      bigger.set(this.#buf.subarray(0, this.#end));
      this.#buf = bigger;
    } else {
      this.#discarding = true; // longer than any line can be: drop up to the next line end
      this.#end = 0;
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

  /** Queues a line (CR LF appended). False when the connection is closed or the queue overflowed. */
  send(line: string): boolean {
    if (this.capture && !this.#closed) {
      this.capture.push(line);
      return true;
    }
    return this.#enqueue(encoder.encode(line + "\r\n"), true);
  }

  /**
   * Queues bytes (whole lines, CR LF included) that are no command's
   * response (another user's event), even while {@link capture} is set.
   * They may be shared with other connections: they are never changed. The
   * cap is judged when the socket takes only part of a write (it is full:
   * what waits is what the client did not read); a burst handed over in one
   * turn may pass it before the socket had a chance to take any, so at the
   * time of queueing only twice the cap is too much.
   */
  sendBytes(bytes: Uint8Array): boolean {
    return this.#enqueue(bytes, false);
  }

  /** Queues `bytes`, a command's own reply (`reply`) or another user's event, and asks for a flush. */
  #enqueue(bytes: Uint8Array, reply: boolean): boolean {
    if (this.#closed) return false;
    this.#queued += bytes.length;
    if (this.#queued > 2 * this.#sendqBytes) {
      this.#overflow();
      return false;
    }
    (this.#queue ??= []).push(bytes);
    if (!this.#writing) flushSoon(this, reply);
    return true;
  }

  /**
   * Writes what is queued (a synchronous socket: all it takes; else one
   * batch), unless a write is in progress: it asks for the next flush when done.
   */
  writeQueued(): void {
    if (this.#writing || this.#closed) return;
    if (this.#now) return this.#writeNow(this.#now);
    const batch = this.#nextBatch();
    if (batch) void this.#write(batch);
  }

  #overflow(): void {
    this.#queue = null;
    this.#head = 0;
    this.#rest = null;
    this.#queued = 0;
    this.#wakeDrained();
    this.onOverflow();
  }

  /**
   * The next write. A piece of {@link SHARED_MIN} bytes or more goes out as
   * it is: it is usually a stage shared by thousands of connections
   * (`fanout.ts`), and joining it with others would make one private copy
   * per connection, held while a slow reader's socket is full — at 10,000
   * members, hundreds of MiB the garbage collector then stops the loop to
   * sweep. Smaller pieces (a command's own replies, single events) are
   * joined into one buffer up to {@link WRITE_BATCH}.
   */
  #nextBatch(): Uint8Array | undefined {
    const q = this.#queue;
    if (!q || this.#head >= q.length) return undefined;
    const at = this.#head;
    let n = 1, size = q[at]!.length;
    if (size < SHARED_MIN) {
      for (; at + n < q.length; n++) {
        const next = q[at + n]!.length;
        if (next >= SHARED_MIN || size + next > WRITE_BATCH) break;
        size += next;
      }
    }
    let batch = q[at]!;
    if (n > 1) {
      batch = new Uint8Array(size);
      for (let i = 0, off = 0; i < n; i++) batch.set(q[at + i]!, off), off += q[at + i]!.length;
    }
    this.#head += n;
    if (this.#head === q.length) q.length = this.#head = 0;
    else if (this.#head >= 1024) this.#queue = q.slice(this.#head), this.#head = 0;
    return batch;
  }

  /**
   * Writes what is queued, batch after batch, while the socket takes it. What
   * it does not take waits for it to take more (then the next flush), and is
   * judged against the cap as {@link #write} judges it.
   */
  #writeNow(socket: WritesNow): void {
    for (;;) {
      const batch = this.#rest ?? this.#nextBatch();
      if (!batch) break;
      let n: number;
      try {
        n = socket.writeNow(batch);
      } catch {
        return this.close(); // the client is gone; the read side sees it too
      }
      this.#queued -= n;
      if (n === batch.length) {
        this.#rest = null;
        continue;
      }
      this.#rest = batch.subarray(n);
      if (this.#queued > this.#sendqBytes) return this.#overflow();
      if (n > 0) this.#wakeDrained();
      this.#writing = true;
      void socket.writable().then(() => {
        this.#writing = false;
        if (!this.#closed) flushSoon(this, false);
      });
      return;
    }
    this.#queue = null;
    this.#head = 0;
    this.#wakeDrained();
  }

  async #write(batch: Uint8Array): Promise<void> {
    this.#writing = true;
    try {
      for (let off = 0; off < batch.length;) {
        const n = await this.conn.write(off === 0 ? batch : batch.subarray(off));
        off += n;
        this.#queued -= n;
        // The socket took only part: it is full, and what waits is judged against the cap.
        if (off < batch.length && this.#queued > this.#sendqBytes) return this.#overflow();
      }
    } catch {
      return this.close(); // the client is gone; the read side sees it too
    } finally {
      this.#writing = false;
    }
    this.#wakeDrained();
    if (this.#queue && this.#head < this.#queue.length) {
      if (!this.#closed) flushSoon(this, false);
    } else (this.#queue = null), (this.#head = 0);
  }

  /** Resolves once at most `low` bytes wait to be written (or the connection closed): output paced by the reader. */
  drained(low: number): Promise<void> {
    if (this.#queued <= low || this.#closed) return Promise.resolve();
    const { promise, resolve } = Promise.withResolvers<void>();
    (this.#drainWaiters ??= []).push({ low, resolve });
    return promise;
  }

  #wakeDrained(): void {
    const w = this.#drainWaiters;
    if (!w) return;
    for (let i = 0; i < w.length;) {
      if (this.#queued <= w[i]!.low || this.#closed) w.splice(i, 1)[0]!.resolve();
      else i++;
    }
    if (w.length === 0) this.#drainWaiters = null;
  }

  /** Resolves once everything queued is written (or the connection closed), at most `timeoutMs`. */
  async flush(timeoutMs: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.drained(0),
      new Promise((r) => timer = setTimeout(r, timeoutMs)),
    ]);
    clearTimeout(timer);
  }

  /** Closes the socket (idempotent). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue = null;
    this.#head = 0;
    this.#rest = null;
    this.#wakeDrained();
    try {
      this.conn.close();
    } catch { /* already closed */ }
  }

  /** True once closed. */
  get closed(): boolean {
    return this.#closed;
  }
}
