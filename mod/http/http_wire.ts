/**
 * HTTP/1.1 framing (RFC 9112) read from a TCP connection, with osps's
 * limits: the request line and headers together at most `maxHeadBytes`
 * (431), a body at most `maxBodyBytes` (413, refused from its declared length
 * before a byte of it is read, or as soon as a chunked body passes it), and
 * the head and the body each within a deadline for the whole of it, so a
 * client dripping bytes cannot stretch it (408). The buffer never holds more
 * than one head plus one read.
 *
 * Strict where leniency lets two parsers disagree about where a request ends
 * (request smuggling): lines end in CR LF, no folded headers, no space
 * before a colon, one Content-Length (or several equal ones), Transfer-Encoding
 * only `chunked` and never together with Content-Length, chunk sizes in at
 * most 16 hex digits. Each byte of a head is scanned once.
 * @module
 */
import { OspsError } from "../errors.ts";
import { expireAfter } from "../deadline.ts";

/** A request the client got wrong (or a limit it passed): answered with `status`, then the connection closes. */
export class HttpError extends OspsError {
  readonly status: number;
  constructor(status: number, message: string, options?: ErrorOptions) {
    super(message, options);
    this.status = status;
  }
}

/** The request line and headers of one request. */
export interface RequestHead {
  readonly method: string;
  /** The request target in origin form (`/path?query`), as sent. */
  readonly target: string;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  readonly minor: number;
  /** Header fields in order, names in lower case. */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  /** Declared body length; -1 for a chunked body. */
  readonly contentLength: number;
  /** The connection stays open after the answer. */
  readonly keepAlive: boolean;
  readonly expectContinue: boolean;
  /** `Upgrade: websocket` was asked for. */
  readonly upgrade: string;
}

/** Limits of one connection's requests. */
export interface WireLimits {
  readonly maxHeadBytes: number;
  readonly maxBodyBytes: number;
  /** Fields in one head (431 past it). */
  readonly maxHeaders: number;
}

const READ_CHUNK = 16 * 1024;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// Field values: visible ASCII, obs-text (bytes 0x80-0xFF, read as latin1), SP and HTAB; no CTL.
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const latin1 = new TextDecoder("latin1");

/** Reads HTTP/1.1 requests from a connection. */
export class HttpReader {
  readonly conn: Deno.Conn;
  readonly #limits: WireLimits;
  #buf: Uint8Array;
  #start = 0;
  #end = 0;
  #eof = false;

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

  /**
   * Reads the next request's head: its first byte within `idleMs`, then the
   * whole head within `headMs` of that byte. Null when the client closed
   * between requests, or sent nothing within `idleMs` (the connection is
   * then closed, without an answer: nothing was asked).
   */
  async readHead(idleMs: number, headMs: number): Promise<RequestHead | null> {
    if (this.#end === this.#start && !this.#eof) {
      // Waiting between requests is the common case: one read, no promise wrapped around it. The coarse
      // timer closes a connection silent past idleMs, which ends the read (as a server stopping does).
      const expiry = expireAfter(idleMs, () => this.#closeQuietly());
      try {
        this.#compact();
        const n = await this.#read(this.#buf.subarray(this.#end));
        if (n === null) this.#eof = true;
        else this.#end += n;
      } finally {
        expiry.cancel();
      }
      if (this.#eof) return null;
    }
    // The usual case: the whole head came in one read, and needs no deadline of its own.
    let scanned = 0; // bytes past #start known to hold no head end (reads may move #start)
    let timer: Timer | undefined;
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
        timer ??= this.#deadline(headMs, "request head");
        await this.#fill(this.#limits.maxHeadBytes + 4, timer);
      }
    } finally {
      timer?.cancel();
    }
  }

  /**
   * Reads the body `head` declares, whole, within `timeoutMs`: never more
   * than `maxBodyBytes` (413 as soon as it is known to be longer).
   */
  async readBody(head: RequestHead, timeoutMs: number): Promise<Uint8Array> {
    const max = this.#limits.maxBodyBytes;
    if (head.contentLength === 0) return EMPTY;
    if (head.contentLength > max) {
      throw new HttpError(413, `request body longer than ${max} bytes`);
    }
    const timer = this.#deadline(timeoutMs, "request body");
    try {
      if (head.contentLength > 0) return await this.#exactly(head.contentLength, timer);
      return await this.#chunked(max, timer);
    } finally {
      timer.cancel();
    }
  }

  async #exactly(n: number, timer: Timer): Promise<Uint8Array> {
    while (this.#end - this.#start < n) {
      if (this.#eof) throw new HttpError(400, "connection closed in the middle of a request body");
      await this.#fill(n, timer);
    }
    const out = this.#buf.slice(this.#start, this.#start + n);
    this.#start += n;
    return out;
  }

  async #line(max: number, timer: Timer, what: string): Promise<string> {
    for (;;) {
      const i = indexOfCrlf(this.#buf, this.#start, this.#end);
      if (i >= 0) {
        const line = latin1.decode(this.#buf.subarray(this.#start, i));
        this.#start = i + 2;
        return line;
      }
      if (this.#end - this.#start > max) throw new HttpError(400, `${what} too long`);
      if (this.#eof) throw new HttpError(400, "connection closed in the middle of a chunked body");
      await this.#fill(max + 2, timer);
    }
  }

  async #chunked(max: number, timer: Timer): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    let total = 0;
    for (;;) {
      const line = await this.#line(1024, timer, "chunk size line");
      const m = /^([0-9A-Fa-f]{1,16})[ \t]*(;.*)?$/.exec(line);
      if (!m) throw new HttpError(400, `bad chunk size line ${JSON.stringify(line.slice(0, 40))}`);
      const size = parseInt(m[1]!, 16);
      if (size === 0) break;
      total += size;
      if (total > max) throw new HttpError(413, `request body longer than ${max} bytes`);
      parts.push(await this.#exactly(size, timer));
      if ((await this.#line(0, timer, "chunk end")) !== "") {
        throw new HttpError(400, "chunk data longer than its declared size");
      }
    }
    // Trailer fields, ignored, bounded like a head.
    for (let trailer = 0;; trailer += 1) {
      const line = await this.#line(this.#limits.maxHeadBytes, timer, "trailer field");
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
  async #fill(want: number, timer: Timer): Promise<void> {
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
    const n = await timer.race(this.#read(this.#buf.subarray(this.#end)));
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

  #deadline(ms: number, what: string): Timer {
    return new Timer(ms, () => new HttpError(408, `${what} not complete within ${ms} ms`));
  }
}

const EMPTY = new Uint8Array(0);

/** A deadline for a whole head or body, on the shared coarse timer; reads race it. */
class Timer {
  #reject: ((err: unknown) => void) | undefined;
  #expired: unknown;
  readonly #expiry: { cancel(): void };

  constructor(ms: number, reason: () => unknown) {
    this.#expiry = expireAfter(ms, () => {
      this.#expired = reason();
      this.#reject?.(this.#expired);
    });
  }

  /** Ends whatever waits now with `reason` (and what would wait later). */
  end(reason: unknown): void {
    this.#expired ??= reason;
    this.#reject?.(reason);
  }

  race<T>(p: Promise<T>): Promise<T> {
    if (this.#expired) return Promise.reject(this.#expired);
    return new Promise<T>((resolve, reject) => {
      this.#reject = reject;
      p.then((v) => {
        this.#reject = undefined;
        resolve(v);
      }, reject);
    });
  }

  cancel(): void {
    this.#expiry.cancel();
  }
}

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

/** Parses a request line and its header fields (without the final CR LF CR LF). */
export function parseHead(bytes: Uint8Array, limits: Pick<WireLimits, "maxHeaders">): RequestHead {
  const text = latin1.decode(bytes);
  const lines = text.split("\r\n");
  const requestLine = lines[0]!;
  const m = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\S+) HTTP\/(\d)\.(\d)$/.exec(requestLine);
  if (!m) {
    throw new HttpError(400, `malformed request line ${JSON.stringify(requestLine.slice(0, 60))}`);
  }
  const [, method, rawTarget, major, minor] = m as unknown as [string, string, string, string, string];
  if (major !== "1" || (minor !== "0" && minor !== "1")) {
    throw new HttpError(505, `HTTP/${major}.${minor} is not supported; this server speaks HTTP/1.1`);
  }
  const target = originForm(rawTarget);
  if (lines.length - 1 > limits.maxHeaders) {
    throw new HttpError(431, `more than ${limits.maxHeaders} header fields`);
  }
  const headers: Array<[string, string]> = [];
  let contentLength: number | undefined, chunked = false, host = 0;
  let connection = "", expect = "", upgrade = "";
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(":");
    const name = colon > 0 ? line.slice(0, colon) : "";
    if (!TOKEN.test(name)) {
      throw new HttpError(
        400,
        line[0] === " " || line[0] === "\t"
          ? "folded header lines are not accepted"
          : `malformed header field ${JSON.stringify(line.slice(0, 40))}`,
      );
    }
    const value = trimOws(line, colon + 1);
    if (!FIELD_VALUE.test(value)) throw new HttpError(400, `control character in header ${name}`);
    const lower = name.toLowerCase();
    headers.push([lower, value]);
    switch (lower) {
      case "content-length": {
        if (!/^\d{1,15}$/.test(value)) {
          throw new HttpError(400, `bad Content-Length ${JSON.stringify(value)}`);
        }
        const n = Number(value);
        if (contentLength !== undefined && contentLength !== n) {
          throw new HttpError(400, "conflicting Content-Length fields");
        }
        contentLength = n;
        break;
      }
      case "transfer-encoding":
        if (value.toLowerCase() !== "chunked" || chunked) {
          throw new HttpError(
            501,
            `Transfer-Encoding ${JSON.stringify(value)} is not supported (only chunked)`,
          );
        }
        chunked = true;
        break;
      case "host":
        host++;
        break;
      case "connection":
        connection += `${value.toLowerCase()},`;
        break;
      case "expect":
        expect = value.toLowerCase();
        break;
      case "upgrade":
        upgrade = value.toLowerCase();
        break;
    }
  }
  if (chunked && contentLength !== undefined) {
    throw new HttpError(400, "Content-Length and Transfer-Encoding together are not accepted");
  }
  if (minor === "1" && host !== 1) {
    throw new HttpError(400, "an HTTP/1.1 request needs exactly one Host field");
  }
  if (expect && expect !== "100-continue") {
    throw new HttpError(417, `Expect ${JSON.stringify(expect)} is not supported`);
  }
  const tokens = connection.split(",").map((t) => t.trim());
  const keepAlive = minor === "1" ? !tokens.includes("close") : tokens.includes("keep-alive");
  return {
    method,
    target,
    minor: Number(minor),
    headers,
    contentLength: chunked ? -1 : contentLength ?? 0,
    keepAlive,
    expectContinue: expect === "100-continue",
    upgrade: tokens.includes("upgrade") ? upgrade : "",
  };
}

/** `line` from `from` on, without the spaces and tabs around it (RFC 9110's OWS, nothing else). */
function trimOws(line: string, from: number): string {
  let a = from, b = line.length;
  while (a < b && (line.charCodeAt(a) === 32 || line.charCodeAt(a) === 9)) a++;
  while (b > a && (line.charCodeAt(b - 1) === 32 || line.charCodeAt(b - 1) === 9)) b--;
  return line.slice(a, b);
}

/** The target as `/path?query`: origin form, or the path of an absolute form; anything else is 400. */
function originForm(target: string): string {
  let t = target;
  if (!t.startsWith("/")) {
    const abs = /^https?:\/\/[^/?#]*(.*)$/i.exec(t);
    if (!abs) {
      throw new HttpError(400, `request target must be a path, got ${JSON.stringify(t.slice(0, 40))}`);
    }
    t = abs[1] || "/";
    if (!t.startsWith("/")) t = `/${t}`;
  }
  if (t.includes("#") || /[^\x21-\x7e]/.test(t)) {
    throw new HttpError(400, "request target holds a character that must be percent-encoded");
  }
  return t;
}
