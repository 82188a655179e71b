/**
 * One HTTP/1.1 client connection: admitted like every osps connection
 * (per-address and overall caps, the per-address rate charged per request),
 * then requests read one after another (keep-alive, pipelining) and handed
 * to the application as `Request`s; each `Response` is written with a
 * `Content-Length`, or chunked when it streams (Server-Sent Events), or the
 * connection is handed over (WebSocket, after `101`). A framing error or a
 * passed limit is answered with its status and the connection closes; every
 * failure ends this connection only.
 * @module
 */
import { logger } from "../log.ts";
import { addrKey, type Admission, hostOf } from "../net/admission.ts";
import { HttpReader, type WireLimits } from "./http_wire.ts";
import { HttpError, type RequestHead } from "./http_head.ts";
import { requestIdOf } from "./api_schemas.ts";
import { expireAfter, Expiry } from "../deadline.ts";

/** What the application learns about a request beside the `Request` itself. */
export interface RequestInfo {
  /** `host:port` of the client. */
  readonly peer: string;
  /** The key per-address limits count by (see `addrKey`). */
  readonly addr: string;
}

/** The application: one request in, one response out. */
export type HttpHandler = (req: Request, info: RequestInfo) => Response | Promise<Response>;

/** A request as read, for a dispatcher that answers without building a `Request` (see `fastRequests`). */
export interface RawRequest {
  readonly method: string;
  readonly target: string;
  header(name: string): string | undefined;
  /** A view of the connection's buffer: valid until the answer is written (copy it to keep it). */
  readonly body: Uint8Array | undefined;
}

/** An answer written as is (no `Response` built). */
export interface Answer {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
}

/**
 * Answers the requests it knows without the application (null: not one of
 * them): at once when it can, else later. It throws (or rejects with) what a
 * route throws; `errorResponse` turns that into the answer.
 */
export type FastPath = (r: RawRequest, requestId: string) => Answer | Promise<Answer> | null;

/** Takes over a connection after `101 Switching Protocols` (WebSocket), with the bytes read past the head. */
export type Takeover = (conn: Deno.Conn, buffered: Uint8Array) => Promise<void>;

const takeovers = new WeakMap<Response, Takeover>();
const streaming = new WeakSet<Response>();

/**
 * Marks a response to an upgrade: it is written as `101 Switching Protocols`
 * with its headers (a `Response` cannot hold a 1xx status), then `takeover`
 * gets the connection.
 */
export function withTakeover(res: Response, takeover: Takeover): Response {
  takeovers.set(res, takeover);
  return res;
}

/** Marks a response whose body is a stream written as it comes (chunked), never buffered whole. */
export function streamed(res: Response): Response {
  streaming.add(res);
  return res;
}

/** Settings of an HTTP port. */
export interface HttpConnOptions extends WireLimits {
  /** The first request's head must be complete within this (slowloris: 408). */
  readonly headTimeoutMs: number;
  /** A kept-alive connection may stay silent this long between requests. */
  readonly idleTimeoutMs: number;
  /** A request's body must be complete within this. */
  readonly bodyTimeoutMs: number;
  /** An answer must be taken by the client's TCP within this, else the connection closes (0 = no limit). */
  readonly writeTimeoutMs: number;
  /** An answer to a refusal (429 before anything was read, a framing error) is built here. */
  readonly refusal: (status: number, detail: string) => Response;
}

/** What a connection needs from its server. */
export interface HttpConnDeps {
  readonly admission: Admission;
  readonly handler: HttpHandler;
  readonly fast?: FastPath;
  /**
   * Aborts when the server stops: an idle kept-alive connection closes, a
   * request being served is answered with `connection: close`.
   */
  readonly stopping: AbortSignal;
  /** Connections waiting for their next request: the service closes them when it stops. */
  readonly idle: Set<Deno.Conn>;
  /** The answer to an error a fast path threw. */
  readonly errorResponse: (err: unknown) => Response;
  readonly options: HttpConnOptions;
  /** A refusal happened before any service ran (counted like the line protocols' refusals). */
  onRefusal(status: number): void;
}

const encoder = new TextEncoder();

/** Serves one accepted connection until it closes. */
export async function serveHttpConn(tcp: Deno.Conn, d: HttpConnDeps): Promise<void> {
  const a = tcp.remoteAddr as Deno.NetAddr;
  const peer = `${a.hostname}:${a.port}`;
  const addr = addrKey(hostOf(peer));
  // Until its first request head is complete, a connection may be closed to make room at a cap (as on
  // the line ports): it is told so with a 408, best effort, and closed.
  const admitted = d.admission.admit(addr, (r) => {
    d.onRefusal(r.status);
    void writeResponse(tcp, d.options.refusal(r.status, r.reason), { close: true, head: false }, 1_000)
      .finally(() => closeQuietly(tcp));
  });
  if ("status" in admitted) {
    d.onRefusal(admitted.status);
    await writeResponse(tcp, d.options.refusal(admitted.status, admitted.reason), {
      close: true,
      head: false,
    });
    return await lingerClose(tcp);
  }
  using writing = new Expiry(() => closeQuietly(tcp));
  writers.set(tcp, { ms: d.options.writeTimeoutMs, expiry: writing });
  using reader = new HttpReader(tcp, d.options);
  const answers: AnswerBuffer = { bytes: new Uint8Array(1024) };
  let handedOver = false;
  try {
    for (let first = true;; first = false) {
      let head: RequestHead | null;
      try {
        if (d.stopping.aborted) return;
        // Between requests the service may close it to stop (see HttpConnDeps.idle).
        const waiting = !reader.buffered;
        if (waiting) d.idle.add(tcp);
        try {
          head = await reader.readHead(
            first ? d.options.headTimeoutMs : d.options.idleTimeoutMs,
            d.options.headTimeoutMs,
          );
        } finally {
          if (waiting) d.idle.delete(tcp);
        }
      } catch (err) {
        return await refuse(tcp, err, d);
      }
      if (head === null) return;
      if (first) admitted.spoke();
      const limited = d.admission.request(addr);
      if (limited) {
        d.onRefusal(limited.status);
        await writeResponse(tcp, d.options.refusal(limited.status, limited.reason), {
          close: true,
          head: false,
        });
        return await lingerClose(tcp);
      }
      const hasBody = head.contentLength !== 0;
      // The usual small request: its body came with its head.
      let body = hasBody && !head.expectContinue ? reader.bufferedBody(head) : undefined;
      if (hasBody && !body) {
        try {
          if (head.expectContinue && head.contentLength <= d.options.maxBodyBytes) {
            await write(tcp, encoder.encode("HTTP/1.1 100 Continue\r\n\r\n"));
          }
          body = await reader.readBody(head, d.options.bodyTimeoutMs);
        } catch (err) {
          return await refuse(tcp, err, d);
        }
      }
      const fast = d.fast ? answerFast(d, head, body) : null;
      if (fast) {
        const a = fast instanceof Promise ? await fast : fast;
        const keep = head.keepAlive && !d.stopping.aborted;
        const ok = a instanceof Response
          ? await writeResponse(tcp, a, { close: !keep, head: false })
          : await writeAnswer(tcp, answers, a, !keep);
        if (!ok || !keep) return;
        continue;
      }
      const req = toRequest(head, body);
      let res: Response;
      try {
        res = await d.handler(req, { peer, addr });
      } catch (err) {
        logger().error("http: handler failed: {err}", { err: String(err) });
        res = d.options.refusal(500, "the server failed; see the worker's log");
      }
      const takeover = takeovers.get(res);
      if (takeover) {
        await res.body?.cancel();
        if (!(await write(tcp, encoder.encode(headLines(res, "", 101))))) return;
        handedOver = true;
        return await takeover(tcp, reader.takeBuffered());
      }
      const keep = head.keepAlive && !res.headers.has("connection") && !d.stopping.aborted;
      const ok = streaming.has(res)
        ? await writeStream(tcp, res, head.minor === 1, head.method === "HEAD")
        : await writeResponse(tcp, res, { close: !keep, head: head.method === "HEAD" });
      if (!ok || !keep || streaming.has(res)) return;
    }
  } finally {
    d.idle.delete(tcp);
    if (!handedOver) closeQuietly(tcp);
    admitted.release();
  }
}

/** Answers a framing error or a passed limit with its status, then closes (after the client read it). */
async function refuse(tcp: Deno.Conn, err: unknown, d: HttpConnDeps): Promise<void> {
  if (!(err instanceof HttpError)) throw err;
  d.onRefusal(err.status);
  logger().debug("http: refused a request: {status} {err}", { status: err.status, err: err.message });
  await writeResponse(tcp, d.options.refusal(err.status, err.message), { close: true, head: false });
  await lingerClose(tcp);
}

/**
 * Shuts the sending side and reads and drops what the client still sends,
 * for up to a second, so the answer is not destroyed by a reset (the kernel
 * sends one when a socket closes with unread input).
 */
async function lingerClose(tcp: Deno.Conn): Promise<void> {
  try {
    await tcp.closeWrite();
  } catch {
    return closeQuietly(tcp);
  }
  const sink = new Uint8Array(4096);
  const until = performance.now() + 1_000;
  const timer = setTimeout(() => closeQuietly(tcp), 1_000);
  try {
    while (performance.now() < until) if ((await tcp.read(sink)) === null) break;
  } catch {
    /* reset or closed by the timer: done */
  } finally {
    clearTimeout(timer);
    closeQuietly(tcp);
  }
}

function closeQuietly(tcp: Deno.Conn): void {
  try {
    tcp.close();
  } catch { /* already closed */ }
}

/** The fast path's answer (its errors as problem responses), or null when it declines; at once when it can. */
function answerFast(
  d: HttpConnDeps,
  head: RequestHead,
  body: Uint8Array | undefined,
): Answer | Response | Promise<Answer | Response> | null {
  const header = (name: string) => head.headers.find(([k]) => k === name)?.[1];
  const requestId = requestIdOf(header("x-request-id"));
  const failed = (err: unknown) => {
    const res = d.errorResponse(err);
    res.headers.set("x-request-id", requestId);
    return res;
  };
  const named = (a: Answer) => {
    a.headers["x-request-id"] = requestId;
    return a;
  };
  let p: Answer | Promise<Answer> | null;
  try {
    p = d.fast!({ method: head.method, target: head.target, header, body }, requestId);
  } catch (err) {
    return failed(err);
  }
  if (p === null) return null;
  return p instanceof Promise ? p.then(named, failed) : named(p);
}

/**
 * Writes an {@link Answer}: head and body in one buffer, one write. The
 * buffer is the connection's own, reused from answer to answer (the write is
 * awaited before the next answer is built), and all-ASCII text (the usual
 * answer) goes into it in one `encodeInto`, its size known without encoding.
 */
function writeAnswer(tcp: Deno.Conn, out: AnswerBuffer, a: Answer, close: boolean): Promise<boolean> {
  let h = `HTTP/1.1 ${a.status} ${REASONS[a.status] ?? "Status"}\r\n`;
  for (const k in a.headers) h += `${k}: ${a.headers[k]}\r\n`;
  const connection = close ? "connection: close\r\n" : "";
  if (!NON_ASCII.test(a.body)) {
    const text = `${h}content-length: ${a.body.length}\r\n${connection}\r\n${a.body}`;
    if (!NON_ASCII.test(text)) { // ASCII: one byte per UTF-16 unit
      // A large answer gets a buffer of its own: a connection keeps at most KEPT_ANSWER bytes between answers.
      if (out.bytes.length < text.length && text.length <= KEPT_ANSWER) {
        out.bytes = new Uint8Array(KEPT_ANSWER);
      }
      const b = text.length <= out.bytes.length ? out.bytes : new Uint8Array(text.length);
      return write(tcp, b.subarray(0, encoder.encodeInto(text, b).written));
    }
  }
  const body = encoder.encode(a.body);
  h += `content-length: ${body.length}\r\n${connection}\r\n`;
  const all = new Uint8Array(h.length * 3 + body.length); // at most 3 bytes per UTF-16 unit of the head
  const { written } = encoder.encodeInto(h, all);
  all.set(body, written);
  return write(tcp, all.subarray(0, written + body.length));
}

/** Any character past ASCII (its UTF-8 takes more than one byte). */
const NON_ASCII = /[\u0080-\uffff]/;

/** The most a connection keeps for its answers between them. */
const KEPT_ANSWER = 16 * 1024;

/** A connection's buffer for its answers. */
interface AnswerBuffer {
  bytes: Uint8Array;
}

function toRequest(head: RequestHead, body: Uint8Array | undefined): Request {
  return new Request(`http://osps${head.target}`, {
    method: head.method,
    headers: head.headers as Array<[string, string]>,
    // A copy: the body read is a view of the connection's buffer, and the handler may read it later.
    body: body && head.method !== "GET" && head.method !== "HEAD" ? body.slice() : undefined,
  });
}

const REASONS: Record<number, string> = {
  100: "Continue",
  101: "Switching Protocols",
  200: "OK",
  201: "Created",
  204: "No Content",
  304: "Not Modified",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  406: "Not Acceptable",
  408: "Request Timeout",
  409: "Conflict",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  417: "Expectation Failed",
  422: "Unprocessable Content",
  426: "Upgrade Required",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
};

function headLines(res: Response, extra: string, status = res.status): string {
  let out = `HTTP/1.1 ${status} ${REASONS[status] ?? "Status"}\r\n`;
  for (const [k, v] of res.headers) {
    if (k === "content-length" || k === "transfer-encoding" || (k === "connection" && status !== 101)) {
      continue;
    }
    out += `${k}: ${v}\r\n`;
  }
  return out + extra + "\r\n";
}

/** Writes a whole response; false when the client is gone. */
async function writeResponse(
  tcp: Deno.Conn,
  res: Response,
  o: { close: boolean; head: boolean },
  limitMs?: number,
): Promise<boolean> {
  const body = res.status === 204 || res.status === 304 || res.body === null
    ? new Uint8Array(0)
    : new Uint8Array(await res.arrayBuffer());
  const extra = `content-length: ${body.length}\r\n${o.close ? "connection: close\r\n" : ""}`;
  const h = encoder.encode(headLines(res, extra));
  if (o.head || body.length === 0) return await write(tcp, h, limitMs);
  const all = new Uint8Array(h.length + body.length);
  all.set(h);
  all.set(body, h.length);
  return await write(tcp, all, limitMs);
}

/** Writes a streamed response as it comes: chunked for HTTP/1.1, close-delimited for 1.0. */
async function writeStream(tcp: Deno.Conn, res: Response, chunked: boolean, head: boolean): Promise<boolean> {
  const extra = chunked ? "transfer-encoding: chunked\r\nconnection: close\r\n" : "connection: close\r\n";
  if (!(await write(tcp, encoder.encode(headLines(res, extra))))) {
    await res.body?.cancel();
    return false;
  }
  if (head || !res.body) return true;
  const reader = res.body.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      if (!value?.length) continue;
      const data = chunked ? frameChunk(value) : value;
      if (!(await write(tcp, data))) return false;
    }
    if (chunked) await write(tcp, encoder.encode("0\r\n\r\n"));
    return true;
  } finally {
    await reader.cancel().catch(() => {});
  }
}

function frameChunk(value: Uint8Array): Uint8Array {
  const size = encoder.encode(`${value.length.toString(16)}\r\n`);
  const out = new Uint8Array(size.length + value.length + 2);
  out.set(size);
  out.set(value, size.length);
  out[out.length - 2] = 13;
  out[out.length - 1] = 10;
  return out;
}

/** Each admitted connection's write timeout (ms; 0 = none) and the deadline it sets for each write. */
const writers = new WeakMap<Deno.Conn, { readonly ms: number; readonly expiry: Expiry }>();

/**
 * Writes all of `data`; false when the client is gone, or did not take it
 * within the connection's write timeout (then the connection is closed: a
 * client that does not read costs its own connection only).
 */
async function write(tcp: Deno.Conn, data: Uint8Array, limitMs?: number): Promise<boolean> {
  // An admitted connection re-arms its own deadline; a refusal's write (limitMs given) gets a one-off one.
  const own = limitMs === undefined ? writers.get(tcp) : undefined;
  const once = !own && limitMs ? expireAfter(limitMs, () => closeQuietly(tcp)) : undefined;
  if (own && own.ms > 0) own.expiry.arm(own.ms);
  try {
    for (let off = 0; off < data.length;) off += await tcp.write(off === 0 ? data : data.subarray(off));
    return true;
  } catch {
    return false;
  } finally {
    own?.expiry.disarm();
    once?.cancel();
  }
}
