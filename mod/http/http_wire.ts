/**
 * HTTP/1.1 framing (RFC 9112) read from a TCP connection, with osps's
 * limits: the request line and headers together at most `maxHeadBytes`
 * (431), a body at most `maxBodyBytes` (413, refused from its declared length
 * before a byte of it is read, or as soon as a chunked body passes it), and
 * the head and the body each within a deadline for the whole of it, so a
 * client dripping bytes cannot stretch it (408). The buffer never holds more
 * than one head plus one read. A head is parsed by `http_head.ts`; chunk
 * sizes are at most 16 hex digits, and lines end in CR LF, as in a head.
 *
 * Every complete request already in the buffer is parsed before the next read
 * (pipelining). A connection has one deadline ({@link Expiry}), set again for
 * each phase (waiting for a request, a head, a body): setting it costs no
 * timer and no clock read, which matters at tens of thousands of requests a
 * second.
 * @module
 */
import { Expiry } from "../deadline.ts";
import { HttpError, latin1Of, parseHead, type RequestHead } from "./http_head.ts";

/** Limits of one connection's requests. */
export interface WireLimits {
  readonly maxHeadBytes: number;
  readonly maxBodyBytes: number;
  /** Fields in one head (431 past it). */
  readonly maxHeaders: number;
}

const READ_CHUNK = 16 * 1024;

/** Reads HTTP/1.1 requests from a connection; dispose of it when the connection ends. */
export class HttpReader implements Disposable {
  readonly conn: Deno.Conn;
  readonly #limits: WireLimits;
  #buf: Uint8Array;
  #start = 0;
  #end = 0;
  #eof = false;
  /** The connection's one deadline; what it ends depends on {@link #phase}. */
  readonly #expiry = new Expiry(() => this.#expired());
  /** What must be complete by the deadline (null: waiting for a request, the connection closes at it). */
  #phase: { readonly what: string; readonly ms: number } | null = null;
  /** The 408 once the deadline of a head or body passed. */
  #late: HttpError | undefined;
  /** Rejects the read waiting now (see {@link #fill}). */
  #reject: ((err: unknown) => void) | undefined;

  constructor(conn: Deno.Conn, limits: WireLimits) {
    this.conn = conn;
    this.#limits = limits;
    this.#buf = new Uint8Array(Math.min(READ_CHUNK, limits.maxHeadBytes + 4));
  }

  /** Bytes read and not yet consumed (what a client pipelined, or sent after an upgrade). */
  takeBuffered(): Uint8Array {
    const rest = this.#buf.slice(this.#start, this.#end);
    this.#start = this.#end = 0;
    return rest;
  }

  /** True when bytes of a next request are already here (pipelining). */
  get buffered(): boolean {
    return this.#end > this.#start;
  }

  /** Leaves the deadline sweep. */
  [Symbol.dispose](): void {
    this.#expiry.cancel();
  }

  /**
   * Reads the next request's head: its first byte within `idleMs`, then the
   * whole head within `headMs` of that byte. Null when the client closed
   * between requests, or sent nothing within `idleMs` (the connection is
   * then closed, without an answer: nothing was asked).
   */
  async readHead(idleMs: number, headMs: number): Promise<RequestHead | null> {
    if (this.#end === this.#start && !this.#eof) {
      // Waiting between requests is the common case: one read, no promise wrapped around it. The deadline
      // closes a connection silent past idleMs, which ends the read (as a server stopping does).
      this.#arm(idleMs, null);
      try {
        this.#compact();
        let n: number | null;
        try {
          n = await this.conn.read(this.#buf.subarray(this.#end));
        } catch {
          n = null; // reset, or closed under us (at the deadline): the client is gone
        }
        if (n === null) this.#eof = true;
        else this.#end += n;
      } finally {
        this.#expiry.disarm();
      }
      if (this.#eof) return null;
    }
    // The usual case: the whole head came in one read, and needs no deadline of its own.
    let scanned = 0; // bytes past #start known to hold no head end (reads may move #start)
    let armed = false;
    try {
      for (;;) {
        // Find CR LF CR LF from where the last search stopped (minus 3: it may straddle reads).
        const at = findHeadEnd(this.#buf, this.#start + Math.max(0, scanned - 3), this.#end);
        if (at >= 0) {
          const head = this.#buf.subarray(this.#start, at);
          this.#start = at + 4;
          return parseHead(head, this.#limits);
        }
        if (hasBareLf(this.#buf, this.#start + Math.max(0, scanned - 1), this.#end)) {
          throw new HttpError(400, "header lines must end in CR LF");
        }
        scanned = this.#end - this.#start;
        if (this.#end - this.#start > this.#limits.maxHeadBytes) {
          throw new HttpError(431, `request head longer than ${this.#limits.maxHeadBytes} bytes`);
        }
        if (this.#eof) {
          if (this.#end === this.#start) return null;
          throw new HttpError(400, "connection closed in the middle of a request head");
        }
        // Counted from the head's first byte (or from the start of a pipelined one).
        if (!armed) this.#arm(headMs, "request head"), armed = true;
        await this.#fill(this.#limits.maxHeadBytes + 4);
      }
    } finally {
      if (armed) this.#expiry.disarm();
    }
  }

  /**
   * Reads the body `head` declares, whole, within `timeoutMs`: never more
   * than `maxBodyBytes` (413 as soon as it is known to be longer). A body
   * with a Content-Length is a view of the connection's buffer, valid until
   * the next read from this reader (copy it to keep it longer): copying it
   * costs more than the rest of reading a small request.
   */
  async readBody(head: RequestHead, timeoutMs: number): Promise<Uint8Array> {
    const max = this.#limits.maxBodyBytes;
    const n = head.contentLength;
    if (n === 0) return EMPTY;
    if (n > max) throw new HttpError(413, `request body longer than ${max} bytes`);
    const here = this.bufferedBody(head); // the usual case: no deadline needed
    if (here) return here;
    this.#arm(timeoutMs, "request body");
    try {
      if (n > 0) return await this.#exactly(n);
      return await this.#chunked(max);
    } finally {
      this.#expiry.disarm();
    }
  }

  /** The body `head` declares when all of it is already here (Content-Length), else undefined. */
  bufferedBody(head: RequestHead): Uint8Array | undefined {
    const n = head.contentLength;
    if (n === 0) return EMPTY;
    if (n > 0 && n <= this.#limits.maxBodyBytes && this.#end - this.#start >= n) return this.#take(n);
    return undefined;
  }

  #take(n: number): Uint8Array {
    const out = this.#buf.subarray(this.#start, this.#start + n);
    this.#start += n;
    return out;
  }

  async #exactly(n: number): Promise<Uint8Array> {
    while (this.#end - this.#start < n) {
      if (this.#eof) throw new HttpError(400, "connection closed in the middle of a request body");
      await this.#fill(n);
    }
    return this.#take(n);
  }

  async #line(max: number, what: string): Promise<string> {
    for (;;) {
      const i = indexOfCrlf(this.#buf, this.#start, this.#end);
      if (i >= 0) {
        const line = latin1Of(this.#buf, this.#start, i);
        this.#start = i + 2;
        return line;
      }
      if (this.#end - this.#start > max) throw new HttpError(400, `${what} too long`);
      if (this.#eof) throw new HttpError(400, "connection closed in the middle of a chunked body");
      await this.#fill(max + 2);
    }
  }

  async #chunked(max: number): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    let total = 0;
    for (;;) {
      const line = await this.#line(1024, "chunk size line");
      const m = /^([0-9A-Fa-f]{1,16})[ \t]*(;.*)?$/.exec(line);
      if (!m) throw new HttpError(400, `bad chunk size line ${JSON.stringify(line.slice(0, 40))}`);
      const size = parseInt(m[1]!, 16);
      if (size === 0) break;
      total += size;
      if (total > max) throw new HttpError(413, `request body longer than ${max} bytes`);
      parts.push((await this.#exactly(size)).slice()); // the next read may move the buffer under a view
      if ((await this.#line(0, "chunk end")) !== "") {
        throw new HttpError(400, "chunk data longer than its declared size");
      }
    }
    // Trailer fields, ignored, bounded like a head.
    for (let trailer = 0;; trailer += 1) {
      const line = await this.#line(this.#limits.maxHeadBytes, "trailer field");
      if (line === "") break;
      if (trailer >= this.#limits.maxHeaders) throw new HttpError(431, "too many trailer fields");
    }
    if (parts.length === 1) return parts[0]!;
    const out = new Uint8Array(total);
    let off = 0;
    for (const p of parts) out.set(p, off), off += p.length;
    return out;
  }

  /** Reads more, keeping room for up to `want` unconsumed bytes; throws 408 once the deadline passed. */
  async #fill(want: number): Promise<void> {
    this.#compact();
    if (this.#end === this.#buf.length) {
      const size = Math.min(
        Math.max(this.#buf.length * 2, READ_CHUNK),
        Math.max(want, READ_CHUNK) + READ_CHUNK,
      );
      const grown = new Uint8Array(size);
      grown.set(this.#buf.subarray(0, this.#end));
      this.#buf = grown;
    }
    if (this.#late) throw this.#late;
    const read = this.#read(this.#buf.subarray(this.#end));
    // The read races the deadline: a client dripping bytes is answered 408 at it, whatever it sends.
    const n = await new Promise<number | null>((resolve, reject) => {
      this.#reject = reject;
      read.then(resolve);
    }).finally(() => this.#reject = undefined);
    if (n === null) this.#eof = true;
    else this.#end += n;
  }

  /** Moves unconsumed bytes to the front when the buffer is full or empty. */
  #compact(): void {
    if (this.#start > 0 && (this.#end === this.#buf.length || this.#start === this.#end)) {
      this.#buf.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
  }

  /** Sets the deadline for `phase` (null: the wait for a request) `ms` from now. */
  #arm(ms: number, what: string | null): void {
    this.#phase = what === null ? null : { what, ms };
    this.#late = undefined;
    this.#expiry.arm(ms);
  }

  #expired(): void {
    const phase = this.#phase;
    if (phase === null) return this.#closeQuietly();
    this.#late = new HttpError(408, `${phase.what} not complete within ${phase.ms} ms`);
    this.#reject?.(this.#late);
  }

  #closeQuietly(): void {
    try {
      this.conn.close();
    } catch { /* already closed */ }
  }

  async #read(into: Uint8Array): Promise<number | null> {
    try {
      return await this.conn.read(into);
    } catch {
      return null; // reset, or closed under us: the client is gone
    }
  }
}

const EMPTY = new Uint8Array(0);

function findHeadEnd(b: Uint8Array, from: number, to: number): number {
  for (let i = from; i + 3 < to; i++) {
    if (b[i] === 13 && b[i + 1] === 10 && b[i + 2] === 13 && b[i + 3] === 10) return i;
  }
  return -1;
}

/** True when a LF in `b[from, to)` has no CR before it (a line end the other side may read differently). */
function hasBareLf(b: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (b[i] === 10 && (i === 0 || b[i - 1] !== 13)) return true;
  return false;
}

function indexOfCrlf(b: Uint8Array, from: number, to: number): number {
  for (let i = b.indexOf(13, from); i >= 0 && i + 1 < to; i = b.indexOf(13, i + 1)) {
    if (b[i + 1] === 10) return i;
  }
  return -1;
}
