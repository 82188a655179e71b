/**
 * An HTTP/1.1 request head (RFC 9112) parsed from its bytes: the request
 * line and the header fields, checked byte by byte in one pass, with no
 * regular expression and no decoding of the whole head. Strict where
 * leniency lets two parsers disagree about where a request ends (request
 * smuggling): lines end in CR LF, no folded headers, no space before a
 * colon, one Content-Length (or several equal ones), Transfer-Encoding only
 * `chunked` and never together with Content-Length.
 * @module
 */
import { OspsError } from "../errors.ts";

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

const CR = 13, LF = 10, SP = 32, HTAB = 9, COLON = 58;

/** RFC 9110's tchar (a token's bytes): 1, else 0. */
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") {
  TCHAR[c.charCodeAt(0)] = 1;
}
/** Bytes `\S` does not match in a latin1-decoded request line (they end the line's shape). */
const BLANK = new Uint8Array(256);
for (const c of [HTAB, LF, 0x0b, 0x0c, CR, SP, 0xa0]) BLANK[c] = 1;

/** Header names the server reads, as interned lower-case strings (no string built for them). */
const KNOWN = new Map<number, string[]>();
for (
  const name of [
    "host",
    "accept",
    "origin",
    "expect",
    "upgrade",
    "connection",
    "user-agent",
    "content-type",
    "x-request-id",
    "authorization",
    "last-event-id",
    "content-length",
    "accept-encoding",
    "transfer-encoding",
  ]
) {
  const same = KNOWN.get(name.length) ?? [];
  same.push(name);
  KNOWN.set(name.length, same);
}

/**
 * `b[from, to)` as a latin1 string: one character per byte, U+0000 to U+00FF
 * (TextDecoder's "latin1" is windows-1252, which turns 0x80-0x9F into
 * characters past U+00FF that a `Headers` refuses).
 */
export function latin1Of(b: Uint8Array, from: number, to: number): string {
  const CHUNK = 4096; // arguments of one call
  if (to - from <= CHUNK) return String.fromCharCode.apply(null, b.subarray(from, to) as unknown as number[]);
  const parts: string[] = [];
  for (let at = from; at < to; at += CHUNK) parts.push(latin1Of(b, at, Math.min(to, at + CHUNK)));
  return parts.join("");
}

/** The lower-case name of `b[from, to)` (a token): interned for the names the server reads. */
function lowerName(b: Uint8Array, from: number, to: number): string {
  const candidates = KNOWN.get(to - from);
  if (candidates) {
    for (const name of candidates) {
      let i = 0;
      // Only letters and '-' in a candidate; `| 0x20` lower-cases a letter and keeps '-' (CR never reaches here).
      while (i < name.length && (b[from + i]! | 0x20) === name.charCodeAt(i)) i++;
      if (i === name.length) return name;
    }
  }
  return latin1Of(b, from, to).toLowerCase();
}

/** Index of the CR of the next CR LF in `b[from, to)`, or `to`. */
function lineEnd(b: Uint8Array, from: number, to: number): number {
  for (let i = b.indexOf(CR, from); i >= 0 && i + 1 < to; i = b.indexOf(CR, i + 1)) {
    if (b[i + 1] === LF) return i;
  }
  return to;
}

/** Parses a request line and its header fields (without the final CR LF CR LF). */
export function parseHead(bytes: Uint8Array, limits: { readonly maxHeaders: number }): RequestHead {
  const b = bytes, end = bytes.length;
  // The head as latin1 text once: each value is a slice of it (one conversion instead of one per field).
  const text = latin1Of(b, 0, end);
  const lineAt = lineEnd(b, 0, end);
  const { method, target, minor } = requestLine(b, lineAt, text);
  const headers: Array<[string, string]> = [];
  let contentLength: number | undefined, chunked = false, host = 0;
  let connection = "", expect = "", upgrade = "";
  for (let at = lineAt + 2; at < end + 2;) {
    const eol = lineEnd(b, at, end);
    if (headers.length >= limits.maxHeaders) throw tooManyHeaders(limits.maxHeaders);
    try {
      let colon = at;
      while (colon < eol && TCHAR[b[colon]!] === 1) colon++;
      if (colon === at || colon === eol || b[colon] !== COLON) {
        const line = latin1Of(b, at, eol);
        throw new HttpError(
          400,
          line[0] === " " || line[0] === "\t"
            ? "folded header lines are not accepted"
            : `malformed header field ${JSON.stringify(line.slice(0, 40))}`,
        );
      }
      // The value without the spaces and tabs around it (RFC 9110's OWS, nothing else); no CTL in it.
      let from = colon + 1, to = eol;
      while (from < to && (b[from] === SP || b[from] === HTAB)) from++;
      while (to > from && (b[to - 1] === SP || b[to - 1] === HTAB)) to--;
      for (let i = from; i < to; i++) {
        const c = b[i]!;
        if ((c < 0x20 && c !== HTAB) || c === 0x7f) {
          throw new HttpError(400, `control character in header ${latin1Of(b, at, colon)}`);
        }
      }
      const name = lowerName(b, at, colon);
      const value = text.slice(from, to);
      headers.push([name, value]);
      switch (name) {
        case "content-length": {
          const n = digits(b, from, to);
          if (n < 0) throw new HttpError(400, `bad Content-Length ${JSON.stringify(value)}`);
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
    } catch (err) {
      // More fields than allowed is the answer whatever else is wrong in them.
      if (countLines(b, eol, end) + headers.length + 1 > limits.maxHeaders) {
        throw tooManyHeaders(limits.maxHeaders);
      }
      throw err;
    }
    at = eol + 2;
  }
  if (chunked && contentLength !== undefined) {
    throw new HttpError(400, "Content-Length and Transfer-Encoding together are not accepted");
  }
  if (minor === 1 && host !== 1) {
    throw new HttpError(400, "an HTTP/1.1 request needs exactly one Host field");
  }
  if (expect && expect !== "100-continue") {
    throw new HttpError(417, `Expect ${JSON.stringify(expect)} is not supported`);
  }
  let keepAlive = minor === 1, upgrading = false;
  if (connection) {
    const tokens = connection.split(",").map((t) => t.trim());
    keepAlive = minor === 1 ? !tokens.includes("close") : tokens.includes("keep-alive");
    upgrading = tokens.includes("upgrade");
  }
  return {
    method,
    target,
    minor,
    headers,
    contentLength: chunked ? -1 : contentLength ?? 0,
    keepAlive,
    expectContinue: expect === "100-continue",
    upgrade: upgrading ? upgrade : "",
  };
}

function tooManyHeaders(max: number): HttpError {
  return new HttpError(431, `more than ${max} header fields`);
}

/** Lines after the CR LF at `from` up to `end` (the fields still to come). */
function countLines(b: Uint8Array, from: number, end: number): number {
  let n = 0;
  for (let at = from + 2; at < end + 2; at = lineEnd(b, at, end) + 2) n++;
  return n;
}

/** The value of 1 to 15 decimal digits in `b[from, to)`, or -1. */
function digits(b: Uint8Array, from: number, to: number): number {
  if (to === from || to - from > 15) return -1;
  let n = 0;
  for (let i = from; i < to; i++) {
    const d = b[i]! - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

/** `METHOD SP target SP HTTP/d.d` in `b[0, end)` (`text`: the same bytes as latin1). */
function requestLine(
  b: Uint8Array,
  end: number,
  text: string,
): { method: string; target: string; minor: number } {
  let i = 0;
  while (i < end && TCHAR[b[i]!] === 1) i++;
  const methodEnd = i;
  let visible = true; // the target holds only visible ASCII and no '#'
  if (methodEnd > 0 && b[i] === SP) {
    i++;
    const targetAt = i;
    for (; i < end && BLANK[b[i]!] === 0; i++) {
      const c = b[i]!;
      if (c < 0x21 || c > 0x7e || c === 0x23) visible = false;
    }
    const targetEnd = i;
    // " HTTP/" digit "." digit, and nothing after it.
    if (
      targetEnd > targetAt && end - targetEnd === 9 && b[i] === SP && b[i + 1] === 0x48 &&
      b[i + 2] === 0x54 &&
      b[i + 3] === 0x54 && b[i + 4] === 0x50 && b[i + 5] === 0x2f && isDigit(b[i + 6]!) &&
      b[i + 7] === 0x2e &&
      isDigit(b[i + 8]!)
    ) {
      const major = b[i + 6]! - 48, minor = b[i + 8]! - 48;
      if (major !== 1 || minor > 1) {
        throw new HttpError(505, `HTTP/${major}.${minor} is not supported; this server speaks HTTP/1.1`);
      }
      const method = methodOf(b, methodEnd);
      const raw = text.slice(targetAt, targetEnd);
      const target = b[targetAt] === 0x2f ? (visible ? raw : notEncoded()) : originForm(raw);
      return { method, target, minor };
    }
  }
  const line = text.slice(0, end);
  throw new HttpError(400, `malformed request line ${JSON.stringify(line.slice(0, 60))}`);
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

function methodOf(b: Uint8Array, end: number): string {
  if (end === 4 && b[0] === 0x50 && b[1] === 0x4f && b[2] === 0x53 && b[3] === 0x54) return "POST";
  if (end === 3 && b[0] === 0x47 && b[1] === 0x45 && b[2] === 0x54) return "GET";
  return latin1Of(b, 0, end);
}

function notEncoded(): never {
  throw new HttpError(400, "request target holds a character that must be percent-encoded");
}

/** The path of an absolute-form target (`http://host/path?query`) as `/path?query`; anything else is 400. */
function originForm(target: string): string {
  const abs = /^https?:\/\/[^/?#]*(.*)$/i.exec(target);
  if (!abs) {
    throw new HttpError(400, `request target must be a path, got ${JSON.stringify(target.slice(0, 40))}`);
  }
  let t = abs[1] || "/";
  if (!t.startsWith("/")) t = `/${t}`;
  if (t.includes("#") || /[^\x21-\x7e]/.test(t)) notEncoded();
  return t;
}
