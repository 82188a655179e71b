/**
 * A raw HTTP/1.1 client for tests: sends exactly the bytes given (malformed
 * ones too), in pieces and at a pace of the test's choosing, and reads what
 * the server answers until it closes or a whole response is there.
 */

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A response as read off the wire (or what happened instead). */
export interface RawAnswer {
  /** Status code, or 0 when none came. */
  readonly status: number;
  readonly head: string;
  readonly body: string;
  /** The server closed the connection (after the answer, or without one). */
  readonly closed: boolean;
  /** Time from the last byte sent to the answer (or the close), ms. */
  readonly ms: number;
}

/** A raw connection to an HTTP port. */
export class RawHttp {
  readonly conn: Deno.TcpConn;
  #got = new Uint8Array(0);
  #closed = false;
  #lastSent = performance.now();

  private constructor(conn: Deno.TcpConn) {
    this.conn = conn;
  }

  static async connect(port: number): Promise<RawHttp> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.setNoDelay(true);
    return new RawHttp(conn);
  }

  /** Sends text or bytes; false when the server had closed. */
  async send(data: string | Uint8Array): Promise<boolean> {
    const b = typeof data === "string" ? enc.encode(data) : data;
    try {
      for (let off = 0; off < b.length;) off += await this.conn.write(b.subarray(off));
      this.#lastSent = performance.now();
      return true;
    } catch {
      return false;
    }
  }

  /** Reads until one whole response is there (by Content-Length), the server closes, or `timeoutMs`. */
  async answer(timeoutMs = 5_000): Promise<RawAnswer> {
    const until = performance.now() + timeoutMs;
    const buf = new Uint8Array(64 * 1024);
    for (;;) {
      const parsed = this.#parse();
      if (parsed) return parsed;
      if (this.#closed || performance.now() > until) break;
      const n = await Promise.race([
        this.conn.read(buf).catch(() => null),
        new Promise<"late">((r) => setTimeout(() => r("late"), Math.max(1, until - performance.now()))),
      ]);
      if (n === "late") break;
      if (n === null) this.#closed = true;
      else {
        const next = new Uint8Array(this.#got.length + n);
        next.set(this.#got);
        next.set(buf.subarray(0, n), this.#got.length);
        this.#got = next;
      }
    }
    const text = dec.decode(this.#got);
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0);
    return {
      status,
      head: text.split("\r\n\r\n")[0] ?? "",
      body: "",
      closed: this.#closed,
      ms: this.#since(),
    };
  }

  #since(): number {
    return performance.now() - this.#lastSent;
  }

  #parse(): RawAnswer | null {
    const text = dec.decode(this.#got);
    const end = text.indexOf("\r\n\r\n");
    if (end < 0) return null;
    const head = text.slice(0, end);
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
    if (status === 101 || status === 100) {
      this.#got = this.#got.slice(enc.encode(text.slice(0, end + 4)).length);
      return { status, head, body: "", closed: this.#closed, ms: this.#since() };
    }
    const length = Number(/\r\ncontent-length: (\d+)/i.exec(head)?.[1] ?? -1);
    const bodyBytes = this.#got.subarray(enc.encode(text.slice(0, end + 4)).length);
    if (length < 0 && !this.#closed) return null;
    if (length >= 0 && bodyBytes.length < length) return null;
    const body = dec.decode(length >= 0 ? bodyBytes.subarray(0, length) : bodyBytes);
    this.#got = length >= 0 ? bodyBytes.slice(length) : new Uint8Array(0);
    return { status, head, body, closed: this.#closed, ms: this.#since() };
  }

  /** Waits until the server closes the connection (true), or `timeoutMs` passes (false). */
  async closedWithin(timeoutMs: number): Promise<boolean> {
    const a = await this.answer(timeoutMs);
    return a.closed;
  }

  close(): void {
    try {
      this.conn.close();
    } catch { /* already closed */ }
  }
}

/** One request in one exchange on a fresh connection. */
export async function exchange(
  port: number,
  bytes: string | Uint8Array,
  timeoutMs = 5_000,
): Promise<RawAnswer> {
  const c = await RawHttp.connect(port);
  try {
    await c.send(bytes);
    return await c.answer(timeoutMs);
  } finally {
    c.close();
  }
}
